package audit

import (
	"encoding/base64"

	"golang.org/x/mod/sumdb/note"
)

func base64Of(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// signText signs arbitrary note text with the log's key, to build malformed
// but correctly signed heads.
func signText(l *Log, text string) ([]byte, error) {
	return note.Sign(&note.Note{Text: text}, l.signer)
}
