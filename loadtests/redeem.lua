-- wrk script: POST a redemption with a unique client-made id per request (and a random card).
-- env: PATH_ (default /api/v1/redemptions), TOKEN, CARDS (count), PRODUCT, POINT, QTY, DELAY_MS (0 = flat out)
local counter = 0
local thread_id = 0
local threads = {}
local path = os.getenv("PATH_") or "/api/v1/redemptions"
local token = os.getenv("TOKEN") or ""
local cards = tonumber(os.getenv("CARDS") or "1000000")
local card_fmt = os.getenv("CARD_FMT") or "C%08d"
local product = os.getenv("PRODUCT") or "gasoline"
local point = os.getenv("POINT") or "P0"
local qty = tonumber(os.getenv("QTY") or "1000")
local delay_ms = tonumber(os.getenv("DELAY_MS") or "0")

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 1000 + (tid or 0))
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
end

function request()
  counter = counter + 1
  local id = string.format("%08x-%04x-4%03x-8%03x-%012x", math.random(0, 0x7fffffff), tid or 0,
    math.random(0, 0xfff), math.random(0, 0xfff), counter)
  local card = string.format(card_fmt, math.random(1, cards))
  local body = string.format('{"id":"%s","card_serial":"%s","product_code":"%s","quantity_qty":%d,"point_code":"%s"}',
    id, card, product, qty, point)
  return wrk.format(nil, path, nil, body)
end

local codes = {}
function response(status, headers, body)
  if status >= 300 then
    codes[status] = (codes[status] or 0) + 1
    if os.getenv("SHOW_ERRORS") and (codes[status] or 0) <= 2 then io.write(status .. " " .. body .. "\n") end
  end
end

function delay()
  return delay_ms
end

function done(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("WRK rps=%.1f p50_ms=%.2f p99_ms=%.2f errors=%d requests=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    errors, summary.requests))
end
