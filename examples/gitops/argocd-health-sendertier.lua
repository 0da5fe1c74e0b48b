-- Argo CD health check for tiergate.io/SenderTier.
-- Healthy: signed off at the current spec with every pod Ready. Degraded: a health check halted
-- the tier (Halted or RolledBack, Stalled=True). Suspended: on-call paused the fleet before this
-- tier reached its spec (a paused tier already signed off at its spec stays Healthy).
-- Progressing: anything in between (rolling out, baking, waiting for a lower tier, or status not
-- yet written for the latest spec). Plain Lua 5.1, as Argo CD's interpreter runs.
local hs = {}

local function condition(status, type_)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function text(status, fallback)
  if status ~= nil and status.message ~= nil and status.message ~= "" then
    return status.message
  end
  return fallback
end

local status = obj.status
local generation = obj.metadata.generation
local annotations = obj.metadata.annotations or {}
local paused = annotations["tiergate.io/paused"] == "true"

if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the tiergate operator to reconcile the tier"
  return hs
end

local phase = status.phase
local halted = condition(status, "Halted")
local stalled = condition(status, "Stalled")
local ready = condition(status, "Ready")

if status.observedGeneration == nil or (generation ~= nil and status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the tiergate operator to observe generation " .. tostring(generation)
  return hs
end

if phase == "Halted" or phase == "RolledBack"
  or (halted ~= nil and halted.status == "True")
  or (stalled ~= nil and stalled.status == "True") then
  hs.status = "Degraded"
  if status.halt ~= nil and status.halt.message ~= nil and status.halt.message ~= "" then
    hs.message = phase .. ": " .. status.halt.message
  else
    hs.message = text(status, "Halted by a failed health check")
  end
  return hs
end

if phase == "SignedOff" and ready ~= nil and ready.status == "True"
  and (ready.observedGeneration == nil or generation == nil or ready.observedGeneration >= generation) then
  hs.status = "Healthy"
  hs.message = text(status, "Signed off")
  return hs
end

if paused then
  hs.status = "Suspended"
  hs.message = "Fleet paused (tiergate resume to continue): " .. text(status, phase)
  return hs
end

hs.status = "Progressing"
hs.message = text(status, phase)
return hs
