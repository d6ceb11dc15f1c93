-- GET /api/articles/{slug} for random seeded slugs, anonymously.
-- usage: wrk ... -s article.lua URL -- SEED_DIR
package.path = debug.getinfo(1, "S").source:match("@(.*/)") .. "?.lua;" .. package.path
require "common"
local slugs
function init(args)
  slugs = read_lines(args[1] .. "/slugs.txt")
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end
function request()
  return wrk.format("GET", "/api/articles/" .. slugs[math.random(#slugs)])
end
