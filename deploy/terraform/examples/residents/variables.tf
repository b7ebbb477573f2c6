variable "environment" {
  description = "development, staging or production."
  type        = string
}

variable "aws_account_id" {
  description = "The environment's AWS account, where the residents data lives."
  type        = string
}

variable "cloud_account_label" {
  description = "residents.yaml's owner.cloudAccount, mapped to this environment's account for the authorizer."
  type        = string
  default     = "social-care-production"
}

variable "region" {
  type    = string
  default = "eu-west-2"
}

variable "secret_arn" {
  description = "Secrets Manager secret with PLINTH_AUTH_SECRET and PLINTH_TOKEN_SECRET (JSON)."
  type        = string
}

variable "log_level" {
  type    = string
  default = "info"
}

variable "environment_variables" {
  description = "Further PLINTH_* settings of the environment."
  type        = map(string)
  default     = {}
}
