-- Argo CD health check for iam.instanceprofile.dev/InstanceProfileBinding.
--
-- Reads the status the way kstatus does (status.observedGeneration and the
-- abnormal-true conditions Stalled and Reconciling), then Ready:
--   Progressing  no status or no conditions yet (waiting for the controller),
--                or status.observedGeneration below metadata.generation.
--   Degraded     Stalled=True: the binding needs a person (AccessDenied,
--                RoleNotFound, DeletionBlocked, PolicyDenied, ...).
--   Progressing  being deleted (metadata.deletionTimestamp), or
--                Reconciling=True: the controller converges or retries by
--                itself (PropagationPending, Throttled, AwsUnavailable, ...).
--   Healthy      Ready=True.
-- Ready=False with neither Stalled nor Reconciling (controllers older than
-- those conditions, or the final Deleted status): a reason that resolves by
-- itself (PropagationPending, Reconciling, Throttled, AwsUnavailable,
-- StateChanged, Rotating, Deleted; Conflict, as earlier builds used it) is Progressing, any other reason Degraded, also while
-- the binding is being deleted (DeletionBlocked).
--
-- Lua 5.1 (Argo CD embeds gopher-lua) and base functions only: a script from
-- argocd-cm runs without the string and math libraries.
-- Source of truth for deploy/argocd-cm-patch.yaml and
-- deploy/argocd/iam.instanceprofile.dev/InstanceProfileBinding/health.lua:
-- edit this file, then run scripts/generate-argocd.sh (tests/argocd_health.rs).
local hs = {}

local transient = {
  PropagationPending = true,
  Reconciling = true,
  Throttled = true,
  AwsUnavailable = true,
  StateChanged = true,
  Rotating = true,
  Conflict = true,
  Deleted = true,
}

local function describe(condition, fallback)
  if condition == nil then
    return fallback
  end
  local reason = condition.reason or ""
  local message = condition.message or ""
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  if message ~= "" then
    return message
  end
  if reason ~= "" then
    return reason
  end
  return fallback
end

local status = obj.status
local conditions = nil
if type(status) == "table" and type(status.conditions) == "table" then
  conditions = status.conditions
end
if conditions == nil or #conditions == 0 then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller to report status"
  return hs
end

local metadata = obj.metadata or {}
local generation = tonumber(metadata.generation)
local observed = tonumber(status.observedGeneration)
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller to observe generation " .. tostring(metadata.generation)
  return hs
end

local ready = nil
local stalled = nil
local reconciling = nil
for _, condition in ipairs(conditions) do
  if condition.type == "Ready" then
    ready = condition
  elseif condition.type == "Stalled" and condition.status == "True" then
    stalled = condition
  elseif condition.type == "Reconciling" and condition.status == "True" then
    reconciling = condition
  end
end

if stalled ~= nil then
  hs.status = "Degraded"
  hs.message = describe(stalled, "Stalled")
  return hs
end

-- Ready=False with neither Stalled nor Reconciling: an older controller.
if reconciling == nil and ready ~= nil and ready.status == "False"
    and not transient[ready.reason or ""] then
  hs.status = "Degraded"
  hs.message = describe(ready, "Not ready")
  return hs
end

if metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  local detail = describe(reconciling, describe(ready, ""))
  if detail ~= "" then
    hs.message = "Being deleted: " .. detail
  else
    hs.message = "Being deleted"
  end
  return hs
end

if reconciling ~= nil then
  hs.status = "Progressing"
  hs.message = describe(reconciling, "Reconciling")
  return hs
end

if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
elseif ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
else
  hs.status = "Progressing"
  hs.message = describe(ready, "Reconciling")
end
return hs
