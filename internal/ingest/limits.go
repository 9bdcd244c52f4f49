package ingest

// MaxPayload is the largest payload the decoder accepts, so that adapters can
// stop reading a request body beyond it.
func (d *Decoder) MaxPayload() int { return d.o.MaxPayload }
