package orloj

import (
	"testing"
)

type prepNode struct {
	Name string `json:"name"`
	Next *prepNode
}

// Types encoding/json refuses, nil and non-struct values are passed over.
func TestPrepareToleratesAnything(t *testing.T) {
	if !Prepare(nil, make(chan int), func() {}, 3, "s", map[int]string{}, &prepNode{}) {
		t.Fatal("Prepare returned false")
	}
}
