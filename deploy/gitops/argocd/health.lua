-- Argo CD health for Signpost objects (signpost.dev Tenant, Service, Policy, Router).
-- The operator writes status.observedGeneration and the Ready / Programmed / Degraded
-- conditions. Argo CD runs this with the object as `obj` (gopher-lua: Lua 5.1).
--   Progressing  the operator has not yet looked at this generation (no status, or an older
--                observedGeneration): any condition there describes an older spec
--   Degraded     Degraded=True, with its message (a dangling reference, a router's Nack...)
--   Healthy      Ready=True
--   Progressing  otherwise, with the Ready condition's reason and message when there is one
local hs = {}
local status = obj.status
local generation = obj.metadata and obj.metadata.generation

-- The condition's message, else its reason, else the fallback.
local function text(condition, fallback)
  if condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  if condition.reason ~= nil and condition.reason ~= "" then
    return condition.reason
  end
  return fallback
end

local function observed(condition)
  -- A condition may carry its own observedGeneration; when it does, it must be current too.
  return condition.observedGeneration == nil or generation == nil
    or condition.observedGeneration >= generation
end

if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Signpost operator to observe this object"
  return hs
end
if generation ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the Signpost operator to observe generation " .. generation
    .. " (status is for " .. status.observedGeneration .. ")"
  return hs
end

local ready = nil
if status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    if condition.type == "Degraded" and condition.status == "True" and observed(condition) then
      hs.status = "Degraded"
      hs.message = text(condition, "Degraded")
      return hs
    end
    if condition.type == "Ready" and observed(condition) then
      ready = condition
    end
  end
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = text(ready, "Ready")
  return hs
end

hs.status = "Progressing"
if ready == nil then
  hs.message = "Waiting for the Ready condition"
elseif ready.reason ~= nil and ready.reason ~= "" and ready.message ~= nil and ready.message ~= "" then
  hs.message = ready.reason .. ": " .. ready.message
else
  hs.message = text(ready, "Not ready")
end
return hs
