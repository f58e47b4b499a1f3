// proxytest-peer: the proxy-wasm Go SDK's proxytest host emulator in wasm
// mode (proxytest.NewWasmVMContext: the compiled module runs in wazero),
// answering benchmarks/bench_peers.py over stdin/stdout.
//
//	proxytest-peer SPEC
//
// SPEC is the lifecycle file every peer reads (tab-separated lines):
//
//	wasm	PATH                 the compiled filter
//	config	TEXT                 its plugin configuration (one line)
//	request	NAME	VALUE        a request header as the filter gets it
//	response	NAME	VALUE    a response header as the filter gets it
//
// One lifecycle: a new HTTP context, request headers (end of stream),
// response headers (end of stream), then CompleteHttpContext (on_log; the
// emulator keeps on_done and on_delete of HTTP contexts to itself).
//
// Commands, one a line:
//
//	run N   N lifecycles; answers "ran N CPU_NS" (the process's user + system
//	        CPU time, getrusage, for the N lifecycles only)
//	fresh   a new emulator and VM (the module compiled again), outside any
//	        timing: proxytest never deletes a stream's state, so a long run
//	        would otherwise grow its maps; answers "fresh"
//	show    one lifecycle, then the headers after it and the logs, one
//	        "request|response|log<TAB>NAME<TAB>VALUE" a line, then "end"
//	quit    (or end of input) exits
package main

import (
	"bufio"
	"fmt"
	"io"
	"log"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

type spec struct {
	wasm     []byte
	config   []byte
	request  [][2]string
	response [][2]string
}

func readSpec(path string) (*spec, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s := &spec{}
	for n, line := range strings.Split(string(raw), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		switch {
		case f[0] == "wasm" && len(f) == 2:
			if s.wasm, err = os.ReadFile(f[1]); err != nil {
				return nil, err
			}
		case f[0] == "config" && len(f) == 2:
			s.config = []byte(f[1])
		case f[0] == "request" && len(f) == 3:
			s.request = append(s.request, [2]string{f[1], f[2]})
		case f[0] == "response" && len(f) == 3:
			s.response = append(s.response, [2]string{f[1], f[2]})
		default:
			return nil, fmt.Errorf("%s:%d: unknown line %q", path, n+1, line)
		}
	}
	if s.wasm == nil {
		return nil, fmt.Errorf("%s: no wasm line", path)
	}
	return s, nil
}

type peer struct {
	spec  *spec
	host  proxytest.HostEmulator
	reset func()
	vm    proxytest.WasmVMContext
}

func (p *peer) start() error {
	if p.reset != nil {
		p.reset()
		p.vm.Close()
	}
	vm, err := proxytest.NewWasmVMContext(p.spec.wasm)
	if err != nil {
		return err
	}
	opt := proxytest.NewEmulatorOption().WithVMContext(vm).WithPluginConfiguration(p.spec.config)
	host, reset := proxytest.NewHostEmulator(opt)
	p.host, p.reset, p.vm = host, reset, vm
	if !host.StartVM() {
		return fmt.Errorf("on_vm_start failed")
	}
	if !host.StartPlugin() {
		return fmt.Errorf("on_configure failed: %v", host.GetErrorLogs())
	}
	return nil
}

func (p *peer) lifecycle() uint32 {
	id := p.host.InitializeHttpContext()
	if a := p.host.CallOnRequestHeaders(id, p.spec.request, true); a != types.ActionContinue {
		log.Fatalf("on_request_headers returned %v", a)
	}
	if a := p.host.CallOnResponseHeaders(id, p.spec.response, true); a != types.ActionContinue {
		log.Fatalf("on_response_headers returned %v", a)
	}
	p.host.CompleteHttpContext(id)
	return id
}

func cpuNanos() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		log.Fatalf("getrusage: %v", err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: proxytest-peer SPEC")
		os.Exit(2)
	}
	s, err := readSpec(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxytest-peer:", err)
		os.Exit(1)
	}
	// The emulator prints every proxy_log line through the log package (and
	// keeps it too): the other hosts keep logs without printing them.
	log.SetOutput(io.Discard)
	fail := log.New(os.Stderr, "proxytest-peer: ", 0)
	p := &peer{spec: s}
	if err := p.start(); err != nil {
		fail.Fatal(err)
	}
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(out, "ready proxytest")
	out.Flush()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd := strings.Fields(in.Text())
		switch {
		case len(cmd) == 2 && cmd[0] == "run":
			n, err := strconv.Atoi(cmd[1])
			if err != nil || n < 1 {
				fail.Fatalf("bad count %q", cmd[1])
			}
			began := cpuNanos()
			for i := 0; i < n; i++ {
				p.lifecycle()
			}
			fmt.Fprintf(out, "ran %d %d\n", n, cpuNanos()-began)
		case len(cmd) == 1 && cmd[0] == "fresh":
			if err := p.start(); err != nil {
				fail.Fatal(err)
			}
			fmt.Fprintln(out, "fresh")
		case len(cmd) == 1 && cmd[0] == "show":
			before := len(p.host.GetInfoLogs())
			id := p.lifecycle()
			for _, h := range p.host.GetCurrentRequestHeaders(id) {
				fmt.Fprintf(out, "request\t%s\t%s\n", h[0], h[1])
			}
			for _, h := range p.host.GetCurrentResponseHeaders(id) {
				fmt.Fprintf(out, "response\t%s\t%s\n", h[0], h[1])
			}
			for _, m := range p.host.GetInfoLogs()[before:] {
				fmt.Fprintf(out, "log\tinfo\t%s\n", m)
			}
			fmt.Fprintln(out, "end")
		case len(cmd) == 1 && cmd[0] == "quit":
			out.Flush()
			return
		default:
			fail.Fatalf("unknown command %q", in.Text())
		}
		out.Flush()
	}
}
