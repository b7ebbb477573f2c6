environment         = "staging"
aws_account_id      = "222222222222"
secret_arn          = "arn:aws:secretsmanager:eu-west-2:222222222222:secret:plinth/staging/residents-GhIjKl"
environment_variables = {
  PLINTH_ADMIN_GROUPS = "plinth-admins"
  PLINTH_AUTH_ISSUER  = "https://sso.example.gov.uk/"
}
