# The residents domain in one environment. Each environment lives in its
# own AWS account (the organisation's multi-account rule), so this root
# module is applied once per environment with that environment's variables
# and its own state:
#
#   make lambda
#   terraform init -backend-config=key=residents/staging.tfstate
#   terraform apply -var-file=staging.tfvars
#
# The provider refuses credentials of any other account.

terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40"
    }
  }
  backend "s3" {}
}

provider "aws" {
  region              = var.region
  allowed_account_ids = [var.aws_account_id]
  default_tags {
    tags = {
      domain      = "residents"
      environment = var.environment
      service     = "plinth"
    }
  }
}

module "residents" {
  source = "../../modules/plinth-domain"

  domain              = "residents"
  environment         = var.environment
  aws_account_id      = var.aws_account_id
  cloud_account_label = var.cloud_account_label
  region              = var.region

  store                 = "dynamodb"
  dynamodb_table_prefix = "residents-"
  dynamodb_table_arns = [
    aws_dynamodb_table.residents_plinth.arn,
    aws_dynamodb_table.residents_residents_residents.arn,
  ]

  secret_arn             = var.secret_arn
  package_dir            = "${path.root}/../../../../bin/lambda/plinth"
  authorizer_package_dir = "${path.root}/../../../../bin/lambda/authorizer"
  lake_bucket_name       = "plinth-residents-lake-${var.environment}-${var.aws_account_id}"
  log_level              = var.log_level
  environment_variables  = var.environment_variables
}

output "api_url" {
  value = module.residents.api_url
}

output "topic_arn" {
  value = module.residents.topic_arn
}
