//! *Act*: run one action against AWS (or simulate it for `plan`) and fold the
//! result into the observed state, so the next decision sees what is true now.

use crate::aws::{Association, AssociationState, Aws, AwsError, ErrorKind, Profile, RoleRef};
use crate::naming;

use super::model::{Action, ActionRecord, Desired};
use super::observe::Observed;
use super::reason::Reason;

/// Why the act step stopped early.
pub(crate) enum Stop {
    /// Look at AWS again soon; the world changed under us (IncorrectState).
    Reobserve,
    /// The profile's name is taken and its tags do not prove it ours.
    Failed(AwsError),
}

pub(crate) const UNKNOWN: &str = "(known after apply)";

/// Runs `action`, updating `observed`. Returns the record of a change made.
pub(crate) async fn execute(
    aws: &Aws,
    desired: &Desired,
    observed: &mut Observed,
    action: &Action,
    dry_run: bool,
) -> Result<Option<ActionRecord>, Stop> {
    match action {
        Action::ReadProfile => {
            let fresh = aws
                .get_profile(&desired.profile_name)
                .await
                .map_err(Stop::Failed)?;
            if fresh.is_none() && observed.profile.as_ref().is_some_and(|p| p.id != UNKNOWN) {
                // Listed a moment ago, gone now: deleted under us, or IAM's
                // read-after-write lag. Either way, look again.
                observed.profile = None;
                return Err(Stop::Reobserve);
            }
            observed.profile = fresh;
            Ok(None)
        }
        Action::CreateProfile { memory } => {
            let mut tags = desired.tags.clone();
            tags.extend(naming::memory_to_tags(
                memory,
                false,
                desired.memory_slots(),
            ));
            let record = ActionRecord {
                reason: Reason::CreatedProfile,
                message: format!(
                    "create instance profile {} at path {}",
                    desired.profile_name, desired.path
                ),
            };
            if dry_run {
                observed.profile = Some(Profile {
                    name: desired.profile_name.clone(),
                    path: desired.path.clone(),
                    arn: UNKNOWN.into(),
                    id: UNKNOWN.into(),
                    roles: Vec::new(),
                    tags: Some(tags),
                });
                return Ok(Some(record));
            }
            match aws
                .create_profile(&desired.profile_name, &desired.path, &tags)
                .await
            {
                Ok(profile) => {
                    let message =
                        format!("created instance profile {} ({})", profile.name, profile.id);
                    observed.profile = Some(profile);
                    Ok(Some(ActionRecord { message, ..record }))
                }
                Err(e) if e.is(ErrorKind::AlreadyExists) => {
                    // Ours from an earlier run (lost response, listing lag, another
                    // path)? Only the tags can say; decide judges them next.
                    match aws
                        .get_profile(&desired.profile_name)
                        .await
                        .map_err(Stop::Failed)?
                    {
                        Some(existing) => {
                            let adopted = existing.tags.as_ref().is_some_and(|t| {
                                naming::tags_prove_ownership(t, &desired.cluster_id, &desired.key)
                            });
                            let message = format!(
                                "adopted instance profile {} ({}), tagged as ours",
                                existing.name, existing.id
                            );
                            observed.profile = Some(existing);
                            Ok(adopted.then_some(ActionRecord {
                                reason: Reason::AdoptedProfile,
                                message,
                            }))
                        }
                        None => Err(Stop::Failed(AwsError {
                            kind: ErrorKind::PropagationPending,
                            ..e
                        })),
                    }
                }
                Err(e) => Err(Stop::Failed(e)),
            }
        }
        Action::WriteTags { set, remove } => {
            let profile = observed.profile.as_mut().ok_or(Stop::Reobserve)?;
            if !dry_run {
                if !remove.is_empty() {
                    aws.untag_profile(&profile.name, remove)
                        .await
                        .map_err(Stop::Failed)?;
                }
                if !set.is_empty() {
                    aws.tag_profile(&profile.name, set)
                        .await
                        .map_err(Stop::Failed)?;
                }
            }
            let tags = profile.tags.get_or_insert_with(Default::default);
            for k in remove {
                tags.remove(k);
            }
            tags.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
            let mut parts = Vec::new();
            if !set.is_empty() {
                parts.push(format!(
                    "set {}",
                    set.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if !remove.is_empty() {
                parts.push(format!("remove {}", remove.join(", ")));
            }
            Ok(Some(ActionRecord {
                reason: Reason::TaggedProfile,
                message: format!(
                    "tags of instance profile {}: {}",
                    profile.name,
                    parts.join("; ")
                ),
            }))
        }
        Action::RecordInstances { ids, partial } => {
            let profile = observed.profile.as_mut().ok_or(Stop::Reobserve)?;
            let new_tags = naming::memory_to_tags(ids, *partial, desired.memory_slots());
            let stale: Vec<String> = profile
                .tags
                .iter()
                .flat_map(|t| t.keys())
                .filter(|k| naming::is_instance_tag_key(k) && !new_tags.contains_key(*k))
                .cloned()
                .collect();
            if !dry_run {
                aws.tag_profile(&profile.name, &new_tags)
                    .await
                    .map_err(Stop::Failed)?;
                if !stale.is_empty() {
                    aws.untag_profile(&profile.name, &stale)
                        .await
                        .map_err(Stop::Failed)?;
                }
            }
            let tags = profile.tags.get_or_insert_with(Default::default);
            for k in &stale {
                tags.remove(k);
            }
            tags.extend(new_tags);
            Ok(Some(ActionRecord {
                reason: Reason::RecordedInstances,
                message: format!(
                    "record managed instances on profile {}: {}{}",
                    profile.name,
                    join(ids),
                    if *partial {
                        " (the record is full: instances beyond it are associated while selected, and left alone once not)"
                    } else {
                        ""
                    }
                ),
            }))
        }
        Action::RemoveRole { role } => {
            let profile = observed.profile.as_mut().ok_or(Stop::Reobserve)?;
            if !dry_run {
                aws.remove_role(&profile.name, role)
                    .await
                    .map_err(Stop::Failed)?;
            }
            profile.roles.retain(|r| &r.name != role);
            Ok(Some(ActionRecord {
                reason: Reason::RemovedRole,
                message: format!("remove role {role} from instance profile {}", profile.name),
            }))
        }
        Action::AddRole => {
            let profile = observed.profile.as_mut().ok_or(Stop::Reobserve)?;
            if !dry_run {
                match aws.add_role(&profile.name, &desired.role.name).await {
                    Ok(()) => {}
                    // The slot is taken (a lost response of ours, or someone else):
                    // re-read and let decide remove the other role first.
                    Err(e) if e.is(ErrorKind::RoleSlotTaken) || e.is(ErrorKind::NotFound) => {
                        observed.profile = aws
                            .get_profile(&desired.profile_name)
                            .await
                            .map_err(Stop::Failed)?;
                        return Ok(None);
                    }
                    Err(e) => return Err(Stop::Failed(e)),
                }
            }
            profile.roles.push(RoleRef {
                name: desired.role.name.clone(),
                arn: desired.role.arn.clone(),
            });
            Ok(Some(ActionRecord {
                reason: Reason::AttachedRole,
                message: format!(
                    "attach role {} to instance profile {}",
                    desired.role.name, profile.name
                ),
            }))
        }
        Action::Associate { instance_id } => {
            let made = hold(observed, instance_id, dry_run, |arn| async move {
                aws.associate(instance_id, &arn).await
            })
            .await;
            if let Err(e) = made {
                return association_error(observed, instance_id, e);
            }
            Ok(Some(ActionRecord {
                reason: Reason::Associated,
                message: format!(
                    "associate instance {instance_id} with instance profile {}",
                    desired.profile_name
                ),
            }))
        }
        Action::Replace {
            instance_id,
            association_id,
            foreign,
        } => {
            let made = hold(observed, instance_id, dry_run, |arn| async move {
                aws.replace_association(association_id, &arn).await
            })
            .await;
            if let Err(e) = made {
                return association_error(observed, instance_id, e);
            }
            let what = if *foreign { "foreign" } else { "stale" };
            Ok(Some(ActionRecord {
                reason: Reason::Replaced,
                message: format!(
                    "replace {what} association {association_id} of instance {instance_id} with instance profile {}",
                    desired.profile_name
                ),
            }))
        }
        Action::Disassociate {
            instance_id,
            association_id,
        } => {
            if !dry_run {
                match aws.disassociate(association_id).await {
                    Ok(()) => {}
                    Err(e) => return association_error(observed, instance_id, e),
                }
            }
            // Selected instances wait for the old association to finish leaving
            // before the new one; other users are simply done with.
            let next = if dry_run {
                AssociationState::Disassociated
            } else {
                AssociationState::Disassociating
            };
            if let Some(sel) = observed.selected_mut(instance_id) {
                if dry_run {
                    sel.association = None;
                } else if let Some(a) = sel.association.as_mut() {
                    a.state = next;
                }
            }
            for a in observed
                .other_users
                .iter_mut()
                .filter(|a| &a.instance_id == instance_id)
            {
                // Deletion waits for it to be gone (docs/design.md §3 step 9); apply
                // only needs to know it is on its way out.
                a.state = next;
            }
            Ok(Some(ActionRecord {
                reason: Reason::Disassociated,
                message: format!("disassociate instance {instance_id} ({association_id})"),
            }))
        }
        Action::Reassociate {
            instance_id,
            association_id,
            running,
            batch,
            batches,
        } => {
            let role = &desired.role.name;
            let message = if *running {
                let made = hold(observed, instance_id, dry_run, |arn| async move {
                    aws.replace_association(association_id, &arn).await
                })
                .await;
                if let Err(e) = made {
                    return association_error(observed, instance_id, e);
                }
                format!(
                    "reassociate instance {instance_id} with instance profile {} so it uses role {role} now (rotation batch {batch} of {batches})",
                    desired.profile_name
                )
            } else {
                if !dry_run && let Err(e) = aws.disassociate(association_id).await {
                    return association_error(observed, instance_id, e);
                }
                if let Some(sel) = observed.selected_mut(instance_id) {
                    if dry_run {
                        sel.association = None;
                    } else if let Some(a) = sel.association.as_mut() {
                        a.state = AssociationState::Disassociating;
                    }
                }
                format!(
                    "disassociate stopped instance {instance_id} ({association_id}) to associate it anew with role {role} (rotation batch {batch} of {batches})"
                )
            };
            if let Some(rotation) = observed.rotation.as_mut() {
                rotation.pending.remove(instance_id);
            }
            Ok(Some(ActionRecord {
                reason: Reason::Reassociated,
                message,
            }))
        }
        Action::DeleteProfile => {
            if !dry_run {
                match aws.delete_profile(&desired.profile_name).await {
                    Ok(()) => {}
                    Err(e) if e.is(ErrorKind::DeleteConflict) => {
                        // A role we did not see is still attached: list the real ones.
                        observed.profile = aws
                            .get_profile(&desired.profile_name)
                            .await
                            .map_err(Stop::Failed)?;
                        return Ok(None);
                    }
                    Err(e) => return Err(Stop::Failed(e)),
                }
            }
            observed.profile = None;
            Ok(Some(ActionRecord {
                reason: Reason::DeletedProfile,
                message: format!("delete instance profile {}", desired.profile_name),
            }))
        }
    }
}

/// Makes an association of `instance_id` with our profile by `call` (given
/// the profile's ARN), or in a plan pretends to, and folds it into
/// `observed`. A missing profile means look again.
async fn hold<F, Fut>(
    observed: &mut Observed,
    instance_id: &str,
    dry_run: bool,
    call: F,
) -> Result<(), AwsError>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<Association, AwsError>>,
{
    let Some(p) = observed.profile.as_ref() else {
        return Err(AwsError {
            kind: ErrorKind::IncorrectState,
            service: "ec2",
            action: "AssociateIamInstanceProfile",
            code: "ProfileGone".into(),
            message: "the instance profile is no longer listed".into(),
        });
    };
    let association = if dry_run {
        simulated(instance_id, &p.arn, &p.id)
    } else {
        call(p.arn.clone()).await?
    };
    if let Some(sel) = observed.selected_mut(instance_id) {
        sel.association = Some(association);
    }
    Ok(())
}

fn simulated(instance_id: &str, arn: &str, id: &str) -> Association {
    Association {
        id: UNKNOWN.into(),
        instance_id: instance_id.into(),
        profile_arn: arn.into(),
        profile_id: id.into(),
        state: AssociationState::Associated,
    }
}

fn association_error(
    observed: &mut Observed,
    instance_id: &str,
    e: AwsError,
) -> Result<Option<ActionRecord>, Stop> {
    match e.kind {
        // Terminated meanwhile: not an error, drop it.
        ErrorKind::InstanceGone => {
            observed.selected.retain(|s| s.instance.id != instance_id);
            observed
                .other_users
                .retain(|a| a.instance_id != instance_id);
            observed.missing.push(instance_id.to_string());
            Ok(None)
        }
        ErrorKind::IncorrectState => Err(Stop::Reobserve),
        _ => Err(Stop::Failed(e)),
    }
}

fn join(ids: &std::collections::BTreeSet<String>) -> String {
    if ids.is_empty() {
        "none".into()
    } else {
        ids.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}
