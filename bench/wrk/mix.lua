-- 90% reads, 10% writes, as random seeded users:
--   reads:  1/3 global list, 1/3 one article, 1/3 feed
--   writes: half new articles, half comments on random articles
-- Counts answers other than 2xx so a run that fails cannot pass for a fast one.
-- usage: wrk ... -s mix.lua URL -- SEED_DIR
package.path = debug.getinfo(1, "S").source:match("@(.*/)") .. "?.lua;" .. package.path
require "common"
local tokens, slugs
local n = 0
function init(args)
  tokens = read_lines(args[1] .. "/tokens.txt")
  slugs = read_lines(args[1] .. "/slugs.txt")
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end
function request()
  n = n + 1
  local r = math.random(100)
  local auth = { ["Authorization"] = "Token " .. tokens[math.random(#tokens)], ["Content-Type"] = "application/json" }
  if r <= 30 then
    return wrk.format("GET", "/api/articles?limit=20")
  elseif r <= 60 then
    return wrk.format("GET", "/api/articles/" .. slugs[math.random(#slugs)])
  elseif r <= 90 then
    return wrk.format("GET", "/api/articles/feed", auth)
  elseif r <= 95 then
    local body = '{"article":{"title":"Load test ' .. n .. '","description":"written under load","body":"Lorem ipsum dolor sit amet.","tagList":["load","bench"]}}'
    return wrk.format("POST", "/api/articles", auth, body)
  else
    local body = '{"comment":{"body":"A comment written under load"}}'
    return wrk.format("POST", "/api/articles/" .. slugs[math.random(#slugs)] .. "/comments", auth, body)
  end
end
