environment         = "development"
aws_account_id      = "111111111111"
secret_arn          = "arn:aws:secretsmanager:eu-west-2:111111111111:secret:plinth/development/residents-AbCdEf"
log_level           = "debug"
environment_variables = {
  PLINTH_ADMIN_GROUPS = "plinth-admins-dev"
}
