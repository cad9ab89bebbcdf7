wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model": "bench", "messages": [{"role": "user", "content": "Say hello."}]}'
