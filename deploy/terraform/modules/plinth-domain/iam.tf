# Least privilege: the API and the background function reach only the
# domain's tables, secret, topic (and the background function its lake);
# the authorizer only reads grants and policies in the system table.

data "aws_iam_policy_document" "assume_lambda" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "api" {
  name               = "${local.name}-api"
  assume_role_policy = data.aws_iam_policy_document.assume_lambda.json
}

resource "aws_iam_role" "background" {
  name               = "${local.name}-background"
  assume_role_policy = data.aws_iam_policy_document.assume_lambda.json
}

resource "aws_iam_role" "authorizer" {
  name               = "${local.name}-authorizer"
  assume_role_policy = data.aws_iam_policy_document.assume_lambda.json
}

# What the API and the background function share: the store, the secret,
# the topic.
data "aws_iam_policy_document" "data" {
  statement {
    sid       = "Secret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.secret_arn]
  }
  statement {
    sid       = "Events"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.events.arn]
  }
  statement {
    sid       = "EventsCheck" # the readiness check lists topics
    actions   = ["sns:ListTopics"]
    resources = ["*"]
  }
  dynamic "statement" {
    for_each = var.store == "dynamodb" ? [1] : []
    content {
      sid = "Store"
      actions = [
        "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
        "dynamodb:Query", "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem",
        "dynamodb:TransactWriteItems", "dynamodb:TransactGetItems", "dynamodb:DescribeTable",
      ]
      resources = concat(var.dynamodb_table_arns, [for arn in var.dynamodb_table_arns : "${arn}/index/*"])
    }
  }
}

data "aws_iam_policy_document" "lake" {
  statement {
    sid       = "LakeObjects"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${aws_s3_bucket.lake.arn}/${var.lake_prefix}/*"]
  }
  statement {
    sid       = "LakeList"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.lake.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.lake_prefix}/*"]
    }
  }
}

data "aws_iam_policy_document" "authorizer" {
  statement {
    sid       = "Secret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.secret_arn]
  }
  dynamic "statement" {
    for_each = var.store == "dynamodb" ? [1] : []
    content {
      sid       = "Grants"
      actions   = ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:DescribeTable"]
      resources = [local.system_table_arn, "${local.system_table_arn}/index/*"]
    }
  }
}

resource "aws_iam_role_policy" "api" {
  name   = "plinth-data"
  role   = aws_iam_role.api.id
  policy = data.aws_iam_policy_document.data.json
}

resource "aws_iam_role_policy" "background" {
  name   = "plinth-data"
  role   = aws_iam_role.background.id
  policy = data.aws_iam_policy_document.data.json
}

resource "aws_iam_role_policy" "background_lake" {
  name   = "plinth-lake"
  role   = aws_iam_role.background.id
  policy = data.aws_iam_policy_document.lake.json
}

resource "aws_iam_role_policy" "authorizer" {
  name   = "plinth-grants"
  role   = aws_iam_role.authorizer.id
  policy = data.aws_iam_policy_document.authorizer.json
}

# Logs, and network interfaces when in a VPC (postgres).
resource "aws_iam_role_policy_attachment" "logs" {
  for_each   = { api = aws_iam_role.api.name, background = aws_iam_role.background.name, authorizer = aws_iam_role.authorizer.name }
  role       = each.value
  policy_arn = length(var.subnet_ids) > 0 ? "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole" : "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
}
