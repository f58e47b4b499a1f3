// A Go program that builds for wasip1 but uses no proxy-wasm SDK.
package main

import "fmt"

func main() {
	fmt.Println("hello")
}
