package repo

import (
	"encoding/json"
	"testing"
)

func FuzzParseConfig(f *testing.F) {
	good, _ := json.Marshal(Config{Version: FormatVersion, PackSize: DefaultPackSize, Polynomial: 0x3DA3358B4DC173, Compression: "fastest"})
	f.Add(good)
	f.Add([]byte(`{"version":1,"pack_size":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := parseConfig(data)
		if err == nil && (cfg.PackSize < 1<<20 || !cfg.Polynomial.Irreducible()) {
			t.Fatalf("accepted invalid config %+v", cfg)
		}
	})
}

func TestParseConfig(t *testing.T) {
	good, _ := json.Marshal(Config{Version: FormatVersion, PackSize: DefaultPackSize, Polynomial: 0x3DA3358B4DC173, Compression: "fastest"})
	if _, err := parseConfig(good); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Config{
		{Version: 2, PackSize: DefaultPackSize, Polynomial: 0x3DA3358B4DC173},
		{Version: 1, PackSize: 10, Polynomial: 0x3DA3358B4DC173},
		{Version: 1, PackSize: DefaultPackSize, Polynomial: 4},
		{Version: 1, PackSize: DefaultPackSize, Polynomial: 0x3DA3358B4DC173, Compression: "turbo"},
	} {
		b, _ := json.Marshal(bad)
		if _, err := parseConfig(b); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}
