-- Prelude of every script that checks a fence. Fences are decimal strings of at most 19
-- digits (0..=i64::MAX, checked by the client), compared digit by digit: Lua numbers are
-- doubles, exact only up to 2^53, so `tonumber` would let 2^53+3 pass after 2^53+4.

-- A stored or presented fence as a decimal string without leading zeros; nil for none.
local function fence_norm(s)
  if not s or s == '' then
    return nil
  end
  if string.find(s, '^%d+$') then
    local n = string.gsub(s, '^0+', '')
    if n == '' then
      return '0'
    end
    return n
  end
  -- A mark written as a double by an earlier version (e.g. "1.76e+18").
  return string.format('%.0f', tonumber(s) or 0)
end

-- Whether decimal string a is less than decimal string b (both normalised).
local function fence_less(a, b)
  if #a ~= #b then
    return #a < #b
  end
  for i = 1, #a do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x < y
    end
  end
  return false
end

-- Checks the presented fence against the mark in `key`. Returns a `fenced` reply to send
-- back, or nil and the new mark to record after the write (false when none).
local function fence_check(key, presented)
  local p = fence_norm(presented)
  if not p then
    return nil, false
  end
  local high = fence_norm(redis.call('GET', key)) or '0'
  if fence_less(p, high) then
    return {'fenced', high}, false
  end
  if fence_less(high, p) then
    return nil, p
  end
  return nil, false
end

