-- Gateway scopes and their order. The order is bundle/routes.ts's SCOPE_RANK, rendered into
-- config.lua, so the TypeScript route policy and the proxy cannot disagree: a scope allows every
-- route class up to its own rank (read < inference < admin).
local config = require "gateway.config"

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

return _M
