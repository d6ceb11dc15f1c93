-- Shared by the wrk scripts: reads one value per line from a file made by `crescendo seed --out`.
function read_lines(path)
  local t = {}
  local f = assert(io.open(path, "r"), "cannot open " .. path)
  for line in f:lines() do
    if #line > 0 then t[#t + 1] = line end
  end
  f:close()
  assert(#t > 0, path .. " is empty")
  return t
end
