# The lake: Hive-partitioned Parquet under
# {lake_prefix}/{domain}/{entity}/events/import_year=YYYY/import_month=MM/
# import_day=DD/import_date=YYYYMMDD/ and …/snapshot/import_date=YYYYMMDD/,
# the audit archive under {lake_prefix}/_audit/. Athena tables: plinth lake ddl.
resource "aws_s3_bucket" "lake" {
  bucket = var.lake_bucket_name
}

resource "aws_s3_bucket_versioning" "lake" {
  bucket = aws_s3_bucket.lake.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_public_access_block" "lake" {
  bucket                  = aws_s3_bucket.lake.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "aws:kms"
    }
  }
}

resource "aws_glue_catalog_database" "lake" {
  name        = replace("plinth_${var.environment}_${var.domain}", "-", "_")
  description = "Plinth ${var.domain} lake (${var.environment}); tables from plinth lake ddl"
}
