//! EC2 operations: instances and their instance-profile associations.

use aws_sdk_ec2::types::{Filter, IamInstanceProfileAssociation, IamInstanceProfileSpecification};

use super::errors::from_sdk;
use super::ratelimit::Family;
use super::{Association, AssociationState, Aws, AwsError, ErrorKind, Instance, RunState};

const EC2: &str = "ec2";
const PAGE: i32 = 1000;

fn association_from(a: &IamInstanceProfileAssociation) -> Option<Association> {
    let profile = a.iam_instance_profile()?;
    Some(Association {
        id: a.association_id()?.to_string(),
        instance_id: a.instance_id()?.to_string(),
        profile_arn: profile.arn().unwrap_or_default().to_string(),
        profile_id: profile.id().unwrap_or_default().to_string(),
        state: AssociationState::parse(a.state().map(|s| s.as_str()).unwrap_or("associated")),
    })
}

/// An instance as the pipeline sees it; `None` for one without an id.
fn instance_from(i: &aws_sdk_ec2::types::Instance) -> Option<Instance> {
    Some(Instance {
        id: i.instance_id()?.to_string(),
        state: RunState::parse(
            i.state()
                .and_then(|s| s.name())
                .map_or("running", |n| n.as_str()),
        ),
        tags: i
            .tags()
            .iter()
            .filter_map(|t| {
                Some((
                    t.key()?.to_string(),
                    t.value().unwrap_or_default().to_string(),
                ))
            })
            .collect(),
    })
}

fn missing(action: &'static str) -> AwsError {
    AwsError {
        kind: ErrorKind::Transient,
        service: EC2,
        action,
        code: "EmptyResponse".into(),
        message: format!("{action} returned no association"),
    }
}

/// The association states that are live (a disassociated association is history).
fn live_associations() -> Filter {
    Filter::builder()
        .name("state")
        .values("associating")
        .values("associated")
        .values("disassociating")
        .build()
}

/// An `instance-id` filter for at most 199 ids (EC2's limit on filter values).
fn instance_ids(ids: &[String]) -> Filter {
    Filter::builder()
        .name("instance-id")
        .set_values(Some(ids.to_vec()))
        .build()
}

impl Aws {
    /// Every live association (associating, associated, disassociating), all pages.
    pub async fn describe_associations(&self) -> Result<Vec<Association>, AwsError> {
        self.associations_where(&[live_associations()]).await
    }

    /// The live associations of the instances `ids` (an `instance-id`
    /// filter): one call for a batch of events.
    pub async fn describe_associations_of(
        &self,
        ids: &[String],
    ) -> Result<Vec<Association>, AwsError> {
        let mut out = Vec::new();
        for chunk in ids.chunks(199) {
            out.extend(
                self.associations_where(&[instance_ids(chunk), live_associations()])
                    .await?,
            );
        }
        Ok(out)
    }

    /// The associations `filters` select, all pages.
    async fn associations_where(&self, filters: &[Filter]) -> Result<Vec<Association>, AwsError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .call(
                    Family::Ec2Read,
                    EC2,
                    "DescribeIamInstanceProfileAssociations",
                    || async {
                        self.ec2
                            .describe_iam_instance_profile_associations()
                            .set_filters(Some(filters.to_vec()))
                            .max_results(PAGE)
                            .set_next_token(token.clone())
                            .send()
                            .await
                            .map_err(|e| {
                                from_sdk(EC2, "DescribeIamInstanceProfileAssociations", &e)
                            })
                    },
                )
                .await?;
            out.extend(
                page.iam_instance_profile_associations()
                    .iter()
                    .filter_map(association_from)
                    .filter(|a| a.state != AssociationState::Disassociated),
            );
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Every instance that is not terminated, all pages; selectors are matched
    /// by the caller so one listing serves every binding.
    pub async fn describe_instances(&self) -> Result<Vec<Instance>, AwsError> {
        let live = Filter::builder()
            .name("instance-state-name")
            .values("pending")
            .values("running")
            .values("stopping")
            .values("stopped")
            .build();
        let mut out = self.instances_where(&[live]).await?;
        out.retain(|i| !matches!(i.state, RunState::Terminated | RunState::ShuttingDown));
        Ok(out)
    }

    /// One instance in any state, terminated included; `None` when EC2 does not know it.
    pub async fn describe_instance(&self, id: &str) -> Result<Option<Instance>, AwsError> {
        let res = self
            .call(Family::Ec2Read, EC2, "DescribeInstances", || async {
                self.ec2
                    .describe_instances()
                    .instance_ids(id)
                    .send()
                    .await
                    .map_err(|e| from_sdk(EC2, "DescribeInstances", &e))
            })
            .await;
        let out = match res {
            Ok(out) => out,
            Err(e) if e.is(ErrorKind::InstanceGone) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(id))
            .and_then(instance_from))
    }

    /// The instances of `ids` in any state, terminated included (an
    /// `instance-id` filter, so an id EC2 does not know is just absent):
    /// one call for a batch of events.
    pub async fn describe_instances_by_id(
        &self,
        ids: &[String],
    ) -> Result<Vec<Instance>, AwsError> {
        let mut out = Vec::new();
        for chunk in ids.chunks(199) {
            out.extend(self.instances_where(&[instance_ids(chunk)]).await?);
        }
        Ok(out)
    }

    /// The instances `filters` select, all pages.
    async fn instances_where(&self, filters: &[Filter]) -> Result<Vec<Instance>, AwsError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .call(Family::Ec2Read, EC2, "DescribeInstances", || async {
                    self.ec2
                        .describe_instances()
                        .set_filters(Some(filters.to_vec()))
                        .max_results(PAGE)
                        .set_next_token(token.clone())
                        .send()
                        .await
                        .map_err(|e| from_sdk(EC2, "DescribeInstances", &e))
                })
                .await?;
            out.extend(
                page.reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .filter_map(instance_from),
            );
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }

    pub async fn associate(
        &self,
        instance_id: &str,
        profile_arn: &str,
    ) -> Result<Association, AwsError> {
        let out = self
            .call(
                Family::Ec2Write,
                EC2,
                "AssociateIamInstanceProfile",
                || async {
                    self.ec2
                        .associate_iam_instance_profile()
                        .instance_id(instance_id)
                        .iam_instance_profile(
                            IamInstanceProfileSpecification::builder()
                                .arn(profile_arn)
                                .build(),
                        )
                        .send()
                        .await
                        .map_err(|e| from_sdk(EC2, "AssociateIamInstanceProfile", &e))
                },
            )
            .await?;
        out.iam_instance_profile_association()
            .and_then(association_from)
            .ok_or_else(|| missing("AssociateIamInstanceProfile"))
    }

    pub async fn replace_association(
        &self,
        association_id: &str,
        profile_arn: &str,
    ) -> Result<Association, AwsError> {
        let out = self
            .call(
                Family::Ec2Write,
                EC2,
                "ReplaceIamInstanceProfileAssociation",
                || async {
                    self.ec2
                        .replace_iam_instance_profile_association()
                        .association_id(association_id)
                        .iam_instance_profile(
                            IamInstanceProfileSpecification::builder()
                                .arn(profile_arn)
                                .build(),
                        )
                        .send()
                        .await
                        .map_err(|e| from_sdk(EC2, "ReplaceIamInstanceProfileAssociation", &e))
                },
            )
            .await?;
        out.iam_instance_profile_association()
            .and_then(association_from)
            .ok_or_else(|| missing("ReplaceIamInstanceProfileAssociation"))
    }

    pub async fn disassociate(&self, association_id: &str) -> Result<(), AwsError> {
        let res = self
            .call(
                Family::Ec2Write,
                EC2,
                "DisassociateIamInstanceProfile",
                || async {
                    self.ec2
                        .disassociate_iam_instance_profile()
                        .association_id(association_id)
                        .send()
                        .await
                        .map_err(|e| from_sdk(EC2, "DisassociateIamInstanceProfile", &e))
                },
            )
            .await;
        match res {
            // Already gone: what we wanted.
            Err(e) if e.code == "InvalidAssociationID.NotFound" => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// The region EC2 calls go to.
    #[must_use]
    pub fn region(&self) -> String {
        self.ec2
            .config()
            .region()
            .map_or_else(|| "us-east-1".to_string(), ToString::to_string)
    }
}
