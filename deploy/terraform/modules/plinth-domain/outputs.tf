output "api_url" {
  description = "The API's base URL (execute-api, with the stage)."
  value       = aws_api_gateway_stage.api.invoke_url
}

output "topic_arn" {
  description = "The domain's events topic: subscribe SQS FIFO queues."
  value       = aws_sns_topic.events.arn
}

output "lake_bucket" {
  description = "The lake bucket."
  value       = aws_s3_bucket.lake.bucket
}

output "functions" {
  description = "The functions' names."
  value = {
    api        = aws_lambda_function.plinth["api"].function_name
    background = aws_lambda_function.plinth["background"].function_name
    authorizer = aws_lambda_function.authorizer.function_name
  }
}
