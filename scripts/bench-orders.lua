-- wrk script for order intake: every request a new order with a unique Idempotency-Key.
-- Needs TOKEN (a shop token) and SHA (sha256 of an uploaded file) in the environment.
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  thread_id = id
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
end

function request()
  counter = counter + 1
  local key = string.format("bench-%d-%d-%d", thread_id, counter, os.time())
  wrk.headers["Idempotency-Key"] = key
  local body = string.format(
    '{"customer_ref":"%s","items":[{"sha256":"%s","quantity":1,"material":"PLA","colour":"black"}]}',
    key, os.getenv("SHA"))
  return wrk.format(nil, "/api/v1/orders", nil, body)
end

function response(status, headers, body)
  if status ~= 201 then
    io.stderr:write("status " .. status .. ": " .. body .. "\n")
  end
end
