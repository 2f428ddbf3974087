# The event queue of `run --event-queue` (docs/events.md) as Terraform: the
# same as events.cfn.yaml and events-iam-forwarding.cfn.yaml. `aws` is the
# provider of the controller's region, `aws.us_east_1` one for us-east-1
# (IAM's CloudTrail events exist only there; in us-east-1 itself set
# forward_iam_events to false). CloudTrail events need a trail that logs
# management events (docs/events.md).
#
#   provider "aws" { region = "eu-west-1" }
#   provider "aws" { alias = "us_east_1", region = "us-east-1" }

terraform {
  required_providers {
    aws = {
      source                = "hashicorp/aws"
      configuration_aliases = [aws.us_east_1]
    }
  }
}

variable "cluster_id" {
  description = "The controller's --cluster-id; the queue is ipb-events-<cluster_id>."
  type        = string
}

variable "forward_iam_events" {
  description = "Forward IAM's CloudTrail events from us-east-1 (true unless the controller runs in us-east-1)."
  type        = bool
  default     = true
}

data "aws_region" "current" {}
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

resource "aws_sqs_queue" "events" {
  name = "ipb-events-${var.cluster_id}"
  # Events are hints: an old one is worth nothing the resync does not do.
  message_retention_seconds  = 300
  visibility_timeout_seconds = 200
  sqs_managed_sse_enabled    = true
}

locals {
  rules = {
    instance-state = {
      description = "EC2 instance state changes for instance-profile-controller"
      pattern = {
        source        = ["aws.ec2"]
        "detail-type" = ["EC2 Instance State-change Notification"]
        detail        = { state = ["pending", "running", "stopped", "terminated"] }
      }
    }
    ec2-calls = {
      description = "Instance-profile association calls for instance-profile-controller"
      pattern = {
        source        = ["aws.ec2"]
        "detail-type" = ["AWS API Call via CloudTrail"]
        detail = {
          eventSource = ["ec2.amazonaws.com"]
          eventName = [
            "AssociateIamInstanceProfile",
            "ReplaceIamInstanceProfileAssociation",
            "DisassociateIamInstanceProfile",
          ]
        }
      }
    }
    iam-calls = {
      description = "Instance-profile calls (from us-east-1) for instance-profile-controller"
      pattern     = local.iam_pattern
    }
  }
  iam_pattern = {
    source        = ["aws.iam"]
    "detail-type" = ["AWS API Call via CloudTrail"]
    detail = {
      eventSource = ["iam.amazonaws.com"]
      eventName   = ["RemoveRoleFromInstanceProfile", "AddRoleToInstanceProfile", "DeleteInstanceProfile"]
    }
  }
}

resource "aws_cloudwatch_event_rule" "events" {
  for_each      = local.rules
  name          = "ipb-${var.cluster_id}-${each.key}"
  description   = each.value.description
  event_pattern = jsonencode(each.value.pattern)
}

resource "aws_cloudwatch_event_target" "events" {
  for_each = local.rules
  rule     = aws_cloudwatch_event_rule.events[each.key].name
  arn      = aws_sqs_queue.events.arn
}

resource "aws_sqs_queue_policy" "events" {
  queue_url = aws_sqs_queue.events.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "EventBridgeRulesOnly"
        Effect    = "Allow"
        Principal = { Service = "events.amazonaws.com" }
        Action    = "sqs:SendMessage"
        Resource  = aws_sqs_queue.events.arn
        Condition = { ArnEquals = { "aws:SourceArn" = [for r in aws_cloudwatch_event_rule.events : r.arn] } }
      },
      {
        Sid       = "TlsOnly"
        Effect    = "Deny"
        Principal = "*"
        Action    = "sqs:*"
        Resource  = aws_sqs_queue.events.arn
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
    ]
  })
}

# us-east-1: IAM's CloudTrail events, forwarded to this region's default bus.
resource "aws_iam_role" "forward_iam_events" {
  count = var.forward_iam_events ? 1 : 0
  name  = "ipb-${var.cluster_id}-forward-iam-events"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Principal = { Service = "events.amazonaws.com" }, Action = "sts:AssumeRole" }]
  })
  inline_policy {
    name = "put-events"
    policy = jsonencode({
      Version = "2012-10-17"
      Statement = [{
        Effect   = "Allow"
        Action   = "events:PutEvents"
        Resource = "arn:${data.aws_partition.current.partition}:events:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:event-bus/default"
      }]
    })
  }
}

resource "aws_cloudwatch_event_rule" "forward_iam_events" {
  count         = var.forward_iam_events ? 1 : 0
  provider      = aws.us_east_1
  name          = "ipb-${var.cluster_id}-forward-iam-calls"
  description   = "Instance-profile calls, forwarded for instance-profile-controller"
  event_pattern = jsonencode(local.iam_pattern)
}

resource "aws_cloudwatch_event_target" "forward_iam_events" {
  count    = var.forward_iam_events ? 1 : 0
  provider = aws.us_east_1
  rule     = aws_cloudwatch_event_rule.forward_iam_events[0].name
  arn      = "arn:${data.aws_partition.current.partition}:events:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:event-bus/default"
  role_arn = aws_iam_role.forward_iam_events[0].arn
}

output "queue_name" {
  description = "The chart value events.queue."
  value       = aws_sqs_queue.events.name
}

output "queue_arn" {
  description = "The Resource of deploy/iam-policy.json's ConsumeEventQueue statement."
  value       = aws_sqs_queue.events.arn
}
