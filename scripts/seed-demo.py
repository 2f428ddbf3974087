"""Seeds a local moto with what examples/ need: roles and tagged instances (idempotent)."""
import json
import sys

import boto3

endpoint = sys.argv[1]
kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
iam = boto3.client("iam", **kw)
ec2 = boto3.client("ec2", **kw)
trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
for role in ("web-app", "batch-worker"):
    try:
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))
    except iam.exceptions.EntityAlreadyExistsException:
        pass
existing = ec2.describe_instances(Filters=[{"Name": "tag:demo", "Values": ["true"]}])["Reservations"]
if not existing:
    image = ec2.describe_images()["Images"][0]["ImageId"]
    for tags in ({"app": "web"}, {"app": "web"}, {"app": "batch"}, {"env": "staging"}, {"team": "reports"}):
        spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in {**tags, "demo": "true"}.items()]}]
        ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, TagSpecifications=spec)
count = sum(len(r["Instances"]) for r in ec2.describe_instances(Filters=[{"Name": "tag:demo", "Values": ["true"]}])["Reservations"])
print(f"seeded roles web-app, batch-worker and {count} demo instances at {endpoint}")
