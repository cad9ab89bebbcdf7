wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("AIGW_BENCH_KEY") or "unused")
wrk.body = '{"model": "bench", "messages": [{"role": "user", "content": "Say hello."}]}'
