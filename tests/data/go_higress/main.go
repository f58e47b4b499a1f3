// A Higress-style filter built by Go itself (no SDK): it declares Higress's
// ABI marker, looks the user up in Redis on request headers and puts the
// reply into an x-redis request header.
package main

import "unsafe"

func main() {}

//go:wasmimport env proxy_log
func proxyLog(level uint32, msg unsafe.Pointer, size uint32) uint32

//go:wasmimport env proxy_redis_init
func proxyRedisInit(cluster unsafe.Pointer, clusterSize uint32, user unsafe.Pointer,
	userSize uint32, pass unsafe.Pointer, passSize uint32, timeoutMs uint32) uint32

//go:wasmimport env proxy_redis_call
func proxyRedisCall(cluster unsafe.Pointer, clusterSize uint32, query unsafe.Pointer,
	querySize uint32, token *uint32) uint32

//go:wasmimport env proxy_get_buffer_bytes
func proxyGetBufferBytes(bufferType, start, maxSize uint32, retPtr unsafe.Pointer,
	retSize *uint32) uint32

//go:wasmimport env proxy_set_effective_context
func proxySetEffectiveContext(contextID uint32) uint32

//go:wasmimport env proxy_add_header_map_value
func proxyAddHeaderMapValue(mapType uint32, key unsafe.Pointer, keySize uint32,
	value unsafe.Pointer, valueSize uint32) uint32

//go:wasmimport env proxy_continue_stream
func proxyContinueStream(streamType uint32) uint32

const cluster = "redis"

var (
	kept   [][]byte
	stream uint32
)

func ptr(s string) (unsafe.Pointer, uint32) {
	return unsafe.Pointer(unsafe.StringData(s)), uint32(len(s))
}

func log(msg string) {
	p, n := ptr(msg)
	proxyLog(2, p, n)
}

//go:wasmexport proxy_abi_version_0_2_100
func abiVersion() {}

//go:wasmexport proxy_on_memory_allocate
func onMemoryAllocate(size uint32) unsafe.Pointer {
	if size == 0 {
		return nil
	}
	buf := make([]byte, size)
	kept = append(kept, buf)
	return unsafe.Pointer(&buf[0])
}

//go:wasmexport proxy_on_context_create
func onContextCreate(contextID, parentID uint32) {}

//go:wasmexport proxy_on_vm_start
func onVMStart(contextID, size uint32) uint32 { return 1 }

//go:wasmexport proxy_on_configure
func onConfigure(contextID, size uint32) uint32 {
	c, cn := ptr(cluster)
	u, un := ptr("default")
	p, pn := ptr("secret")
	if proxyRedisInit(c, cn, u, un, p, pn, 1000) != 0 {
		log("redis init failed")
		return 0
	}
	return 1
}

//go:wasmexport proxy_on_request_headers
func onRequestHeaders(contextID, headers, endOfStream uint32) uint32 {
	stream = contextID
	c, cn := ptr(cluster)
	q, qn := ptr("*2\r\n$3\r\nGET\r\n$6\r\nuser:1\r\n")
	var token uint32
	if proxyRedisCall(c, cn, q, qn, &token) != 0 {
		log("redis call refused")
		return 0
	}
	return 1 // pause until the reply
}

//go:wasmexport proxy_on_redis_call_response
func onRedisCallResponse(rootID, token uint32, status, size int32) {
	proxySetEffectiveContext(stream)
	if status == 0 {
		var data, n uint32
		proxyGetBufferBytes(9, 0, uint32(size), unsafe.Pointer(&data), &n)
		value := unsafe.Slice((*byte)(unsafe.Pointer(uintptr(data))), n)
		k, kn := ptr("x-redis")
		proxyAddHeaderMapValue(0, k, kn, unsafe.Pointer(unsafe.SliceData(value)), n)
	} else {
		log("redis call failed")
	}
	proxyContinueStream(0)
}
