// shared_queue: one plugin receives from a shared queue, another sends to it
// (a test filter for wasmkit's shared queues, built with
// scripts/build-go.sh).
//
// The plugin configuration picks the role:
//
//	receiver            registers queue "jobs" at start and logs each item
//	                    in OnQueueReady as "queue: got ITEM"
//	sender VM_ID        on each request resolves queue "jobs" of VM VM_ID and
//	                    enqueues "METHOD PATH" of the request
package main

import (
	"errors"
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

const queueName = "jobs"

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &queuePlugin{} })
}

type queuePlugin struct {
	types.DefaultPluginContext
	receiver bool
	target   string // the receiving VM id (sender)
}

func (p *queuePlugin) OnPluginStart(int) types.OnPluginStartStatus {
	raw, _ := proxywasm.GetPluginConfiguration()
	fields := strings.Fields(string(raw))
	switch {
	case len(fields) == 1 && fields[0] == "receiver":
		p.receiver = true
		id, err := proxywasm.RegisterSharedQueue(queueName)
		if err != nil {
			proxywasm.LogErrorf("queue: cannot register %q: %v", queueName, err)
			return types.OnPluginStartStatusFailed
		}
		proxywasm.LogInfof("queue: registered %s as %d", queueName, id)
	case len(fields) == 2 && fields[0] == "sender":
		p.target = fields[1]
		proxywasm.LogInfof("queue: sending to %s/%s", p.target, queueName)
	default:
		proxywasm.LogErrorf("queue: bad configuration %q (receiver | sender VM_ID)", raw)
		return types.OnPluginStartStatusFailed
	}
	return types.OnPluginStartStatusOK
}

func (p *queuePlugin) OnQueueReady(queueID uint32) {
	for {
		item, err := proxywasm.DequeueSharedQueue(queueID)
		if errors.Is(err, types.ErrorStatusEmpty) {
			return
		}
		if err != nil {
			proxywasm.LogErrorf("queue: dequeue from %d failed: %v", queueID, err)
			return
		}
		proxywasm.LogInfo("queue: got " + string(item))
	}
}

func (p *queuePlugin) NewHttpContext(uint32) types.HttpContext {
	if p.receiver {
		return &types.DefaultHttpContext{} // the receiver leaves traffic alone
	}
	return &senderStream{target: p.target}
}

type senderStream struct {
	types.DefaultHttpContext
	target string
}

func (s *senderStream) OnHttpRequestHeaders(int, bool) types.Action {
	id, err := proxywasm.ResolveSharedQueue(s.target, queueName)
	if err != nil {
		proxywasm.LogErrorf("queue: cannot resolve %s/%s: %v", s.target, queueName, err)
		return types.ActionContinue
	}
	method, _ := proxywasm.GetHttpRequestHeader(":method")
	path, _ := proxywasm.GetHttpRequestHeader(":path")
	if err := proxywasm.EnqueueSharedQueue(id, []byte(method+" "+path)); err != nil {
		proxywasm.LogErrorf("queue: enqueue to %d failed: %v", id, err)
		return types.ActionContinue
	}
	proxywasm.LogInfof("queue: sent %s %s to %d", method, path, id)
	return types.ActionContinue
}
