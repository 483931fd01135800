package api_test

import (
	"strings"
	"testing"

	"github.com/orloj/orloj/host/api"
)

func TestParseSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    uint64
		wantErr string
	}{
		{in: "0", want: 0},
		{in: "1048576", want: 1 << 20},
		{in: "512B", want: 512},
		{in: "64kB", want: 64_000},
		{in: "64KB", want: 64_000},
		{in: "64MB", want: 64_000_000},
		{in: "2GB", want: 2_000_000_000},
		{in: "64KiB", want: 64 << 10},
		{in: "64MiB", want: 64 << 20},
		{in: "4GiB", want: 4 << 30},
		{in: "256mib", want: 256 << 20},
		{in: "64M", want: 64 << 20},
		{in: "1G", want: 1 << 30},
		{in: " 8 MiB ", want: 8 << 20},
		{in: "18446744073709551615", want: 1<<64 - 1},
		{in: "", wantErr: "whole number"},
		{in: "lots", wantErr: "whole number"},
		{in: "-1MiB", wantErr: "whole number"},
		{in: "1.5GiB", wantErr: "whole number"},
		{in: "MiB", wantErr: "whole number"},
		{in: "64TB", wantErr: "whole number"},
		{in: "17179869184GiB", wantErr: "too large"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := api.ParseSize(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseSize(%q) = %d, %v; want an error with %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
		})
	}
}
