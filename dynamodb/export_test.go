package dynamodb

// SetScanPage sets how many items a scan reads per Query and shard, so a
// small test spans several pages; it returns a func that restores it.
func SetScanPage(n int32) (restore func()) {
	old := scanPage
	scanPage = n
	return func() { scanPage = old }
}
