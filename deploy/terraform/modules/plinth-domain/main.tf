# One Plinth domain in one environment, in the AWS account its data lives
# in: the API as a Lambda behind API Gateway with the Plinth authorizer,
# a scheduled background function, the domain's SNS FIFO topic, its lake
# bucket and least-privilege roles. The data store is DynamoDB tables made
# beside this module (plinth schema dynamodb --format terraform) or an RDS
# PostgreSQL database reached through the VPC, its URL in the secret.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  name  = "plinth-${var.environment}-${var.domain}"
  stage = lookup({ development = "dev", staging = "staging", production = "prod" }, var.environment)

  store_url = var.store == "dynamodb" ? "dynamodb://${var.region}?prefix=${var.dynamodb_table_prefix}" : null
  # The system table holds grants, policies and checkpoints.
  system_table_arn = "arn:${data.aws_partition.current.partition}:dynamodb:${var.region}:${var.aws_account_id}:table/${var.dynamodb_table_prefix}plinth"

  function_environment = merge(var.environment_variables, {
    PLINTH_ENV         = var.environment
    PLINTH_EVENT_BUS   = "sns://${var.region}/${var.aws_account_id}"
    PLINTH_LAKE        = "s3://${aws_s3_bucket.lake.bucket}/${var.lake_prefix}"
    PLINTH_SECRETS_ARN = var.secret_arn
    PLINTH_LOG_LEVEL   = var.log_level
    # Lake landing reads NATS; with SNS, run plinth lake beside a NATS bus.
    PLINTH_LAKE_SERVE = "false"
    PLINTH_DATA_DIR   = "/tmp/plinth"
  }, local.store_url == null ? {} : { PLINTH_STORE = local.store_url })

  authorizer_environment = {
    PLINTH_ENV            = var.environment
    PLINTH_SECRETS_ARN    = var.secret_arn
    PLINTH_LOG_LEVEL      = var.log_level
    PLINTH_CLOUD_ACCOUNTS = var.cloud_account_label == "" ? "" : "${var.cloud_account_label}=${var.aws_account_id}"
    PLINTH_STORE          = local.store_url
  }
}

# Refuse to apply with credentials of another account: the domain's data
# lives in aws_account_id only.
resource "terraform_data" "account_check" {
  input = data.aws_caller_identity.current.account_id
  lifecycle {
    precondition {
      condition     = data.aws_caller_identity.current.account_id == var.aws_account_id
      error_message = "These credentials are for another AWS account than the domain's (aws_account_id)."
    }
    precondition {
      condition     = var.store != "dynamodb" || length(var.dynamodb_table_arns) > 0
      error_message = "store dynamodb needs dynamodb_table_arns (from plinth schema dynamodb --format terraform)."
    }
  }
}
