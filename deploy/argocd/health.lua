-- Argo CD health check for kubetune.io/FineTuneJob.
-- Argo CD runs it with the object in `obj` (gopher-lua, Lua 5.1: no goto, no integer division).
--   Succeeded            -> Healthy
--   Failed               -> Degraded (with the Failed condition's reason and message)
--   Suspended / suspend  -> Suspended (phase Suspended, or spec.runPolicy.suspend set)
--   anything else        -> Progressing (with step/total and the latest message)
local hs = {}

local function condition(status, ctype)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype and c.status == "True" then
      return c
    end
  end
  return nil
end

-- "Reason: message" of a condition, either part may be missing (nil or ""); nil if both are.
local function failure(c)
  local reason, message = c.reason, c.message
  local has_reason = reason ~= nil and reason ~= ""
  local has_message = message ~= nil and message ~= ""
  if has_reason and has_message then
    return tostring(reason) .. ": " .. tostring(message)
  elseif has_reason then
    return tostring(reason)
  elseif has_message then
    return tostring(message)
  end
  return nil
end

local function describe(status, fallback)
  if status.message ~= nil and status.message ~= "" then
    return status.message
  end
  return fallback
end

local status = obj.status
local suspend = obj.spec ~= nil and obj.spec.runPolicy ~= nil and obj.spec.runPolicy.suspend == true

if status == nil or status.phase == nil then
  if suspend then
    hs.status = "Suspended"
    hs.message = "Suspended before it started"
  else
    hs.status = "Progressing"
    hs.message = "Waiting for the kubetune operator"
  end
  return hs
end

-- The operator has not seen the latest spec yet: whatever the phase says is about the old one.
local generation = obj.metadata ~= nil and obj.metadata.generation or nil
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation
    and status.phase ~= "Succeeded" and status.phase ~= "Failed" then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to act on generation " .. tostring(generation)
  return hs
end

if status.phase == "Succeeded" then
  hs.status = "Healthy"
  local adapter = status.adapter ~= nil and status.adapter.uri or nil
  if adapter ~= nil then
    hs.message = "Adapter at " .. adapter
  else
    hs.message = describe(status, "Training finished")
  end
  return hs
end

if status.phase == "Failed" then
  hs.status = "Degraded"
  local failed = condition(status, "Failed")
  local text = failed ~= nil and failure(failed) or nil
  if text ~= nil then
    hs.message = text
  else
    hs.message = describe(status, "Training failed")
  end
  return hs
end

if status.phase == "Suspended" or suspend then
  hs.status = "Suspended"
  hs.message = describe(status, "Suspended: pods stopped, checkpoints kept")
  return hs
end

hs.status = "Progressing"
local progress = status.progress
if progress ~= nil and progress.display ~= nil and progress.display ~= "" then
  hs.message = status.phase .. " " .. progress.display
else
  hs.message = describe(status, status.phase)
end
return hs
