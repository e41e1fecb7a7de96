local time = redis.call('TIME')
local now_s = tonumber(time[1])
local now_ms = now_s * 1000 + math.floor(tonumber(time[2]) / 1000)

-- Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1
  return era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy - 719468
end

-- The UTC calendar month holding day number `days`, as Unix seconds [start, end).
local function month_of(days)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  local next_y, next_m = y, m + 1
  if next_m == 13 then next_y, next_m = y + 1, 1 end
  return days_from_civil(y, m, 1) * 86400, days_from_civil(next_y, next_m, 1) * 86400
end

local counters, counts, starts, ends, limits = {}, {}, {}, {}, {}
local complete = true
for i = 1, #KEYS do
  local limit, period = tonumber(ARGV[3 * i - 2]), ARGV[3 * i - 1]
  local seed, seed_end = string.match(ARGV[3 * i], '^(-?%d+) (%d+)$')
  local s, e
  if period == 'day' then
    s = now_s - now_s % 86400
    e = s + 86400
  elseif period == 'month' then
    s, e = month_of(math.floor(now_s / 86400))
  else
    local w = tonumber(period)
    e = now_s - now_s % w + w
    s = e - w
  end
  local counter = KEYS[i] .. ':' .. e
  local count = tonumber(redis.call('GET', counter) or '-1')
  if count < 0 then
    if period ~= 'day' and period ~= 'month' then
      count = 0
    elseif tonumber(seed) >= 0 and tonumber(seed_end) == e then
      count = tonumber(seed)
    else
      complete = false
    end
  end
  counters[i], counts[i], starts[i], ends[i], limits[i] = counter, count, s, e, limit
end
if complete then
  local room = true
  for i = 1, #KEYS do
    if counts[i] >= limits[i] then room = false end
  end
  if room then
    for i = 1, #KEYS do
      redis.call('SET', counters[i], counts[i] + 1, 'EXAT', ends[i] + 1)
    end
  end
end
local answer = {now_ms}
for i = 1, #KEYS do
  answer[#answer + 1] = counts[i]
  answer[#answer + 1] = starts[i]
  answer[#answer + 1] = ends[i]
end
return answer
