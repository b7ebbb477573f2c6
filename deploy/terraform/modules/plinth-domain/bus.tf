# The domain's change events: one FIFO topic (message group = entity id,
# deduplication id = event id). Listeners subscribe SQS FIFO queues.
resource "aws_sns_topic" "events" {
  name                        = "plinth-${var.environment}-${var.domain}.fifo"
  fifo_topic                  = true
  content_based_deduplication = false
}
