-- calendar: begin (tests/it/redis_limits.rs runs these functions alone against chrono)
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
-- calendar: end

local time = redis.call('TIME')
local now_s = tonumber(time[1])
local now_ms = now_s * 1000 + math.floor(tonumber(time[2]) / 1000)

-- Every period first, then every count in one MGET. A quota's period comes with the caller's
-- bounds for it, taken when Redis's clock is inside them (the calendar arithmetic is then
-- skipped); a window's are Redis's own.
local n = #KEYS
local counters, starts, ends, limits, periods = {}, {}, {}, {}, {}
for i = 1, n do
  local period = ARGV[5 * i - 3]
  local s, e = tonumber(ARGV[5 * i - 2]), tonumber(ARGV[5 * i - 1])
  if period == 'day' or period == 'month' then
    if not (s <= now_s and now_s < e) then
      if period == 'day' then
        s = now_s - now_s % 86400
        e = s + 86400
      else
        s, e = month_of(math.floor(now_s / 86400))
      end
    end
  else
    local w = tonumber(period)
    e = now_s - now_s % w + w
    s = e - w
  end
  counters[i], starts[i], ends[i], limits[i], periods[i] = KEYS[i] .. ':' .. e, s, e, tonumber(ARGV[5 * i - 4]), period
end
local held = redis.call('MGET', unpack(counters))

local counts, fresh = {}, {}
local complete = true
for i = 1, n do
  local count = tonumber(held[i])
  if count == nil then
    -- No count for this period yet: a window starts at 0; a quota from its seed, if one was
    -- given for this same period, else the caller must read one.
    fresh[i] = true
    local seed = tonumber(ARGV[5 * i])
    if periods[i] ~= 'day' and periods[i] ~= 'month' then
      count = 0
    elseif seed >= 0 and tonumber(ARGV[5 * i - 1]) == ends[i] then
      count = seed
    else
      count = -1
      complete = false
    end
  end
  counts[i] = count
end
if complete then
  local room = true
  for i = 1, n do
    if counts[i] >= limits[i] then room = false end
  end
  if room then
    for i = 1, n do
      if fresh[i] then
        redis.call('SET', counters[i], counts[i] + 1, 'EXAT', ends[i] + 1)
      else
        redis.call('INCR', counters[i])
      end
    end
  end
end
local answer = {now_ms}
for i = 1, n do
  answer[#answer + 1] = counts[i]
  answer[#answer + 1] = starts[i]
  answer[#answer + 1] = ends[i]
end
return answer
