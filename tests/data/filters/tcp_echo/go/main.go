// tcp_echo: a network (TCP) filter for wasmkit's TCP connections, built with
// scripts/build-go.sh.
//
// Every callback is logged with the prefix "tcp: ". The filter
//   - counts the bytes each side sent and reports them when the stream is done;
//   - holds client data (Pause) until a newline has arrived, then lets the
//     whole buffered line(s) through; end_of_stream flushes what is held;
//   - rewrites every "ping" in the client data it lets through to "PING";
//   - closes the connection (CloseDownstream) when the client data contains
//     "quit";
//   - prepends "[wasm] " to every non-empty chunk from the upstream.
package main

import (
	"bytes"
	"fmt"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// main never runs in a c-shared module; init registers the plugin.
func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &echoPlugin{} })
}

type echoPlugin struct {
	types.DefaultPluginContext
	connections int
}

func (p *echoPlugin) NewTcpContext(contextID uint32) types.TcpContext {
	p.connections++
	return &echoConn{id: contextID, number: p.connections}
}

type echoConn struct {
	types.DefaultTcpContext
	id     uint32
	number int
	// held is how many client bytes the host keeps buffered for us (paused).
	held       int
	downstream int
	upstream   int
	downChunks int
	upChunks   int
}

func peer(p types.PeerType) string {
	switch p {
	case types.PeerTypeLocal:
		return "local"
	case types.PeerTypeRemote:
		return "remote"
	default:
		return "unknown"
	}
}

func (c *echoConn) OnNewConnection() types.Action {
	proxywasm.LogInfof("tcp: new connection #%d (context %d)", c.number, c.id)
	return types.ActionContinue
}

func (c *echoConn) OnDownstreamData(size int, eos bool) types.Action {
	// While paused the host keeps the earlier bytes: only the rest is new.
	fresh := size - c.held
	c.downstream += fresh
	c.downChunks++
	proxywasm.LogInfof("tcp: downstream data size=%d new=%d eos=%t", size, fresh, eos)
	if size == 0 {
		c.held = 0
		return types.ActionContinue
	}
	data, err := proxywasm.GetDownstreamData(0, size)
	if err != nil {
		proxywasm.LogErrorf("tcp: cannot read the downstream data: %v", err)
		return types.ActionContinue
	}
	if bytes.Contains(data, []byte("quit")) {
		proxywasm.LogInfof("tcp: the client said quit: closing the connection")
		if err := proxywasm.CloseDownstream(); err != nil {
			proxywasm.LogErrorf("tcp: cannot close: %v", err)
		}
		c.held = 0
		return types.ActionContinue
	}
	if !eos && bytes.IndexByte(data, '\n') < 0 {
		c.held = size
		proxywasm.LogInfof("tcp: no newline yet: holding %d bytes", size)
		return types.ActionPause
	}
	if bytes.Contains(data, []byte("ping")) {
		if err := proxywasm.ReplaceDownstreamData(bytes.ReplaceAll(data, []byte("ping"), []byte("PING"))); err != nil {
			proxywasm.LogErrorf("tcp: cannot replace the downstream data: %v", err)
		} else {
			proxywasm.LogInfof("tcp: replaced ping with PING")
		}
	}
	if c.held > 0 {
		proxywasm.LogInfof("tcp: newline seen: releasing %d bytes", size)
	}
	c.held = 0
	return types.ActionContinue
}

func (c *echoConn) OnUpstreamData(size int, eos bool) types.Action {
	c.upstream += size
	c.upChunks++
	proxywasm.LogInfof("tcp: upstream data size=%d eos=%t", size, eos)
	if size > 0 {
		if err := proxywasm.PrependUpstreamData([]byte("[wasm] ")); err != nil {
			proxywasm.LogErrorf("tcp: cannot prepend: %v", err)
		}
	}
	return types.ActionContinue
}

func (c *echoConn) OnDownstreamClose(p types.PeerType) {
	proxywasm.LogInfof("tcp: downstream closed (peer %s)", peer(p))
}

func (c *echoConn) OnUpstreamClose(p types.PeerType) {
	proxywasm.LogInfof("tcp: upstream closed (peer %s)", peer(p))
}

func (c *echoConn) OnStreamDone() {
	proxywasm.LogInfo(fmt.Sprintf(
		"tcp: done #%d: client sent %d bytes in %d chunks, upstream sent %d bytes in %d chunks",
		c.number, c.downstream, c.downChunks, c.upstream, c.upChunks))
}
