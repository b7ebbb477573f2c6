environment         = "production"
aws_account_id      = "333333333333"
secret_arn          = "arn:aws:secretsmanager:eu-west-2:333333333333:secret:plinth/production/residents-MnOpQr"
log_level           = "info"
environment_variables = {
  PLINTH_ADMIN_GROUPS = "plinth-admins"
  PLINTH_AUTH_ISSUER  = "https://sso.example.gov.uk/"
  PLINTH_PUBLIC_URL   = "https://residents.api.example.gov.uk"
}
