package widget

import "testing"

const benchUA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.0.0 Safari/537.36"

// BenchmarkParseUserAgent is the cost a chat start pays for browser and OS.
func BenchmarkParseUserAgent(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		parseUserAgent(benchUA)
	}
}
