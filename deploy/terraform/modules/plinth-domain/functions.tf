data "archive_file" "plinth" {
  type        = "zip"
  source_dir  = var.package_dir
  output_path = "${path.module}/.build/${local.name}.zip"
}

data "archive_file" "authorizer" {
  type        = "zip"
  source_dir  = var.authorizer_package_dir
  output_path = "${path.module}/.build/${local.name}-authorizer.zip"
}

# The API (handler "api": API Gateway events through serve's handler) and
# serve's background work on a schedule (handler "background"), from one
# package.
locals {
  plinth_functions = {
    api = {
      role    = aws_iam_role.api.arn
      memory  = var.api_memory_mb
      timeout = var.api_timeout_seconds
      # -1: no reservation.
      concurrency = -1
    }
    background = {
      role    = aws_iam_role.background.arn
      memory  = 512
      timeout = var.background_timeout_seconds
      # One at a time is enough: the relay and the chainer hold leases,
      # so a second would only stand by.
      concurrency = 1
    }
  }
}

resource "aws_lambda_function" "plinth" {
  for_each = local.plinth_functions

  function_name                  = "${local.name}-${each.key}"
  role                           = each.value.role
  runtime                        = "provided.al2023"
  architectures                  = ["arm64"]
  handler                        = each.key
  filename                       = data.archive_file.plinth.output_path
  source_code_hash               = data.archive_file.plinth.output_base64sha256
  memory_size                    = each.value.memory
  timeout                        = each.value.timeout
  reserved_concurrent_executions = each.value.concurrency

  environment {
    variables = local.function_environment
  }

  dynamic "vpc_config" {
    for_each = length(var.subnet_ids) > 0 ? [1] : []
    content {
      subnet_ids         = var.subnet_ids
      security_group_ids = var.security_group_ids
    }
  }

  depends_on = [aws_cloudwatch_log_group.function, terraform_data.account_check]
}

resource "aws_lambda_function" "authorizer" {
  function_name    = "${local.name}-authorizer"
  role             = aws_iam_role.authorizer.arn
  runtime          = "provided.al2023"
  architectures    = ["arm64"]
  handler          = "bootstrap"
  filename         = data.archive_file.authorizer.output_path
  source_code_hash = data.archive_file.authorizer.output_base64sha256
  memory_size      = 512
  timeout          = 10

  environment {
    variables = { for k, v in local.authorizer_environment : k => v if v != null && v != "" }
  }

  dynamic "vpc_config" {
    for_each = length(var.subnet_ids) > 0 ? [1] : []
    content {
      subnet_ids         = var.subnet_ids
      security_group_ids = var.security_group_ids
    }
  }

  depends_on = [aws_cloudwatch_log_group.function, terraform_data.account_check]
}

resource "aws_cloudwatch_log_group" "function" {
  for_each          = toset(["api", "background", "authorizer"])
  name              = "/aws/lambda/${local.name}-${each.key}"
  retention_in_days = var.log_retention_days
}

# Every minute; each run drains until shortly before its timeout.
resource "aws_cloudwatch_event_rule" "background" {
  name                = "${local.name}-background"
  description         = "Plinth ${var.domain} (${var.environment}): outbox relay, audit chainer, purges"
  schedule_expression = var.background_schedule
}

resource "aws_cloudwatch_event_target" "background" {
  rule = aws_cloudwatch_event_rule.background.name
  arn  = aws_lambda_function.plinth["background"].arn
}

resource "aws_lambda_permission" "background" {
  statement_id  = "AllowEventBridge"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.plinth["background"].function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.background.arn
}
