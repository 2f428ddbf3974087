-- Argo CD health check for iam.instanceprofile.dev/InstanceProfileBinding.
--
-- Healthy:     the controller has seen the current generation and Ready=True.
-- Progressing: no status yet, an older generation observed, Ready missing or
--              Unknown, or Ready=False for a reason that resolves by itself
--              (PropagationPending: IAM is eventually consistent; Reconciling).
-- Degraded:    Ready=False for any other reason (AccessDenied, RoleNotFound,
--              PolicyDenied, DeletionBlocked, ...), which needs a person.
-- Install: deploy/argocd-cm-patch.yaml.
local hs = {}

local transient = {
  PropagationPending = true,
  Reconciling = true,
}

local function describe(condition, fallback)
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

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller to report status"
  return hs
end

local generation = obj.metadata and obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller to observe generation " .. tostring(generation)
  return hs
end

local ready = nil
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == "Ready" then
      ready = condition
      break
    end
  end
end

if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
elseif ready.status == "False" and not transient[ready.reason or ""] then
  hs.status = "Degraded"
  hs.message = describe(ready, "Not ready")
else
  hs.status = "Progressing"
  hs.message = describe(ready, "Reconciling")
end
return hs
