package jsonwarm

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

type prepLeaf struct {
	Deep string `json:"deep_leaf"`
}

type prepNode struct {
	Name     string              `json:"name"`
	Children []prepNode          `json:"children"` // recursive
	Next     *prepNode           `json:"next"`     // recursive through a pointer
	ByName   map[string]prepLeaf `json:"by_name"`
	Raw      []byte              `json:"raw"`
	Pair     [2]*prepLeaf        `json:"pair"`
	hidden   *prepLeaf
	Ch       chan int `json:"-"`
}

// The sample reaches every nested type, so decoding it teaches encoding/json
// all of them; recursion stops.
func TestSampleReachesNestedTypes(t *testing.T) {
	v := reflect.New(reflect.TypeOf(prepNode{})).Elem()
	fill(v, map[reflect.Type]bool{})
	b, err := json.Marshal(v.Interface())
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{`"by_name":{"":{"deep_leaf":""}}`, `"pair":[{"deep_leaf":""},`, `"children":[{"name":""`, `"next":{"name":""`, `"raw":null`} {
		if !strings.Contains(s, want) {
			t.Errorf("sample %s\nlacks %s", s, want)
		}
	}
	if v.FieldByName("hidden").IsNil() == false {
		t.Error("fill set an unexported field")
	}
}
