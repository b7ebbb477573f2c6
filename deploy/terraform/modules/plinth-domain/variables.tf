variable "domain" {
  description = "The domain's name, as in its spec (residents)."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*$", var.domain))
    error_message = "domain: lower case letters, digits and hyphens, starting with a letter."
  }
}

variable "environment" {
  description = "development, staging or production (PLINTH_ENV)."
  type        = string
  validation {
    condition     = contains(["development", "staging", "production"], var.environment)
    error_message = "environment: development, staging or production."
  }
}

variable "aws_account_id" {
  description = "The AWS account the domain's data lives in. Nothing is created in another account, and the authorizer denies requests to a copy of the API elsewhere."
  type        = string
  validation {
    condition     = can(regex("^[0-9]{12}$", var.aws_account_id))
    error_message = "aws_account_id: 12 digits."
  }
}

variable "cloud_account_label" {
  description = "The domain spec's owner.cloudAccount when it is a label (social-care-production): mapped to aws_account_id for the authorizer. Empty when the spec gives the account id itself."
  type        = string
  default     = ""
}

variable "region" {
  description = "AWS region (eu-west-2)."
  type        = string
}

variable "store" {
  description = "dynamodb (tables from plinth schema dynamodb --format terraform, passed in dynamodb_table_arns) or postgres (an RDS database reached through the VPC, its URL in the secret)."
  type        = string
  validation {
    condition     = contains(["dynamodb", "postgres"], var.store)
    error_message = "store: dynamodb or postgres."
  }
}

variable "dynamodb_table_prefix" {
  description = "The --prefix the tables were generated with (residents-): the store URL's prefix."
  type        = string
  default     = ""
}

variable "dynamodb_table_arns" {
  description = "ARNs of the domain's DynamoDB tables, the system table ({prefix}plinth) included. The API and the background function reach only these; the authorizer only the system table."
  type        = list(string)
  default     = []
}

variable "secret_arn" {
  description = "Secrets Manager secret holding a JSON object of PLINTH_* settings: PLINTH_AUTH_SECRET (or PLINTH_AUTH_JWKS_URL in the environment), PLINTH_TOKEN_SECRET and, for postgres, PLINTH_STORE (postgres://user:password@host:5432/db)."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets the functions run in to reach RDS (postgres). Empty: outside a VPC."
  type        = list(string)
  default     = []
}

variable "security_group_ids" {
  description = "Security groups of the functions in the VPC (allowed to the database's port)."
  type        = list(string)
  default     = []
}

variable "package_dir" {
  description = "Folder holding bootstrap for the API and background functions (make lambda: bin/lambda/plinth)."
  type        = string
}

variable "authorizer_package_dir" {
  description = "Folder holding the authorizer's bootstrap (make lambda: bin/lambda/authorizer)."
  type        = string
}

variable "lake_bucket_name" {
  description = "Name of the domain's lake bucket (globally unique)."
  type        = string
}

variable "lake_prefix" {
  description = "Key prefix of the lake in the bucket."
  type        = string
  default     = "lake"
}

variable "log_level" {
  description = "debug, info, warn or error."
  type        = string
  default     = "info"
}

variable "log_retention_days" {
  description = "How long CloudWatch keeps the functions' logs."
  type        = number
  default     = 90
}

variable "api_memory_mb" {
  description = "Memory of the API function (CPU grows with it)."
  type        = number
  default     = 1024
}

variable "api_timeout_seconds" {
  description = "Timeout of the API function; API Gateway's own limit is 29 s."
  type        = number
  default     = 29
}

variable "background_schedule" {
  description = "EventBridge schedule of the background function (outbox relay, audit chainer, tombstone purge, support sweep, contract expiry)."
  type        = string
  default     = "rate(1 minute)"
}

variable "background_timeout_seconds" {
  description = "Timeout of the background function; each invocation works until 10 s before it. With the schedule's minute, about one runs at a time."
  type        = number
  default     = 60
}

variable "environment_variables" {
  description = "Further PLINTH_* settings for the API and background functions (per environment: PLINTH_ADMIN_GROUPS, PLINTH_AUTH_ISSUER …). Never secrets: those go in the secret."
  type        = map(string)
  default     = {}
}
