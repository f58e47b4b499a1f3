//go:build wasmkit_extra

package main

const extra = "on"
