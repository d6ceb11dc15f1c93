-- GET /api/articles/feed as random seeded users.
-- usage: wrk ... -s feed.lua URL -- SEED_DIR
package.path = debug.getinfo(1, "S").source:match("@(.*/)") .. "?.lua;" .. package.path
require "common"
local tokens
function init(args)
  tokens = read_lines(args[1] .. "/tokens.txt")
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end
function request()
  return wrk.format("GET", "/api/articles/feed", { ["Authorization"] = "Token " .. tokens[math.random(#tokens)] })
end
