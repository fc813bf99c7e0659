-- Gateway scopes and their order. The order is bundle/routes.ts's SCOPE_RANK, rendered into
-- config.lua, so the TypeScript route policy and the proxy cannot disagree: a scope allows every
-- route class up to its own rank (read < inference < admin). The only place Lua ranks scopes.
local config = require "gateway.config"
local json = require "gateway.json"

local RANK = config.scope_rank

local _M = {}

--- Whether a credential of `scope` may call a route of class `class` (false for unknown names).
function _M.allows(scope, class)
  local have, need = RANK[scope], RANK[class]
  return have ~= nil and need ~= nil and have >= need
end

--- The higher of two scopes; either may be nil.
function _M.higher(a, b)
  if not a then return b end
  if not b then return a end
  return RANK[b] > RANK[a] and b or a
end

--- The values a scope claim (JWT) or header (external auth) grants: the words of a string
--- (spaces or commas between them), or the strings of an array.
function _M.granted_values(granted)
  local values = {}
  if type(granted) == "string" then
    for word in granted:gmatch("[^%s,]+") do values[#values + 1] = word end
  elseif json.is_array(granted) then
    for _, v in ipairs(granted) do
      if type(v) == "string" then values[#values + 1] = v end
    end
  end
  return values
end

--- The highest gateway scope that `granted` maps to through `values` (claim value -> gateway
--- scope), or nil.
function _M.map(granted, values)
  local best
  for _, v in ipairs(_M.granted_values(granted)) do
    local scope = values[v]
    if scope then best = _M.higher(best, scope) end
  end
  return best
end

return _M
