package main

import (
	"encoding/binary"
	"errors"
)

// The SDK's SendHttpResponse always passes empty response code details. Envoy
// shows details in its access log (%RESPONSE_CODE_DETAILS%) and wasmkit in
// the local reply record, so the filter calls the host function itself.
//
//go:wasmimport env proxy_send_local_response
func proxySendLocalResponse(status uint32, details *byte, detailsSize int32,
	body *byte, bodySize int32, headers *byte, headersSize int32, grpcStatus int32) uint32

// sendLocalReply answers the client with status, headers and body, with
// details as the response code details (no whitespace: Envoy turns it into "_").
func sendLocalReply(status uint32, details string, headers [][2]string, body []byte) error {
	d := []byte(details)
	h := encodePairs(headers)
	if rc := proxySendLocalResponse(status, ptr(d), int32(len(d)), ptr(body), int32(len(body)),
		ptr(h), int32(len(h)), -1); rc != 0 {
		return errors.New("proxy_send_local_response failed")
	}
	return nil
}

func ptr(b []byte) *byte {
	if len(b) == 0 {
		return nil
	}
	return &b[0]
}

// encodePairs serializes a header map as the ABI wants it: the pair count,
// each name and value size (u32 little-endian), then each name and value
// followed by a NUL byte.
func encodePairs(pairs [][2]string) []byte {
	size := 4
	for _, p := range pairs {
		size += 8 + len(p[0]) + len(p[1]) + 2
	}
	out := make([]byte, 4, size)
	binary.LittleEndian.PutUint32(out, uint32(len(pairs)))
	for _, p := range pairs {
		out = binary.LittleEndian.AppendUint32(out, uint32(len(p[0])))
		out = binary.LittleEndian.AppendUint32(out, uint32(len(p[1])))
	}
	for _, p := range pairs {
		out = append(append(out, p[0]...), 0)
		out = append(append(out, p[1]...), 0)
	}
	return out
}
