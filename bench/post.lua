-- wrk script: POST a chat completion. AIGW_BENCH_BODY overrides the body; with
-- AIGW_BENCH_UNIQUE=1 every request's message differs (a cache miss each time).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("AIGW_BENCH_KEY") or "unused")
wrk.body = os.getenv("AIGW_BENCH_BODY")
  or '{"model": "bench", "messages": [{"role": "user", "content": "Say hello."}]}'

if os.getenv("AIGW_BENCH_UNIQUE") == "1" then
  local counter = 0
  -- Defined only in this mode: a request() function costs wrk a Lua call per request.
  request = function()
    counter = counter + 1
    local body = '{"model": "bench", "temperature": 0, "messages": [{"role": "user", "content": "Say hello '
      .. counter .. " " .. math.random(1000000000) .. '."}]}'
    return wrk.format(nil, nil, nil, body)
  end
end
