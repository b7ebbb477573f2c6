# Generated: plinth schema dynamodb --format terraform --domains <folder with residents.yaml> --prefix residents-
# (a test checks it matches what plinth prints today). Each environment is
# its own AWS account, so the names need no environment in them.

resource "aws_dynamodb_table" "residents_plinth" {
  name         = "residents-plinth"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "pk"
  range_key    = "sk"

  attribute {
    name = "pk"
    type = "S"
  }

  attribute {
    name = "sk"
    type = "S"
  }

  point_in_time_recovery {
    enabled = true
  }
}

resource "aws_dynamodb_table" "residents_residents_residents" {
  name         = "residents-residents.residents"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "sh"
  range_key    = "k"

  attribute {
    name = "sh"
    type = "S"
  }

  attribute {
    name = "k"
    type = "S"
  }

  attribute {
    name = "ua"
    type = "S"
  }

  attribute {
    name = "p1_first_name"
    type = "S"
  }

  attribute {
    name = "p3_first_name"
    type = "S"
  }

  global_secondary_index {
    name            = "ua"
    hash_key        = "sh"
    range_key       = "ua"
    projection_type = "ALL"
  }

  global_secondary_index {
    name            = "p1_first_name"
    hash_key        = "p1_first_name"
    range_key       = "k"
    projection_type = "ALL"
  }

  global_secondary_index {
    name            = "p3_first_name"
    hash_key        = "p3_first_name"
    range_key       = "k"
    projection_type = "ALL"
  }
}

