package bridge

import "testing"

func TestForVisitor(t *testing.T) {
	tests := []struct {
		name string
		in   Message
		ok   bool
	}{
		{"visitor's message", Message{From: FromVisitor, Text: "hi"}, true},
		{"agent's reply loses the agent id", Message{From: FromAgent, Agent: "ann", Name: "Ann", Text: "hello"}, true},
		{"note is hidden", Message{From: FromAgent, Agent: "ann", Name: "Ann", Text: "vip", Note: true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vm, ok := tt.in.ForVisitor()
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				if vm != (Message{}) {
					t.Errorf("a hidden note still gives %+v", vm)
				}
				return
			}
			want := tt.in
			want.Agent = ""
			if vm != want {
				t.Errorf("got %+v, want %+v", vm, want)
			}
		})
	}
}

func TestAgentLabel(t *testing.T) {
	tests := []struct {
		m    Message
		want string
	}{
		{Message{Agent: "ann", Name: "Ann Lee"}, "Ann Lee"},
		{Message{Agent: "ann"}, "ann"},
		{Message{}, "Agent"},
	}
	for _, tt := range tests {
		if got := tt.m.AgentLabel(); got != tt.want {
			t.Errorf("%+v.AgentLabel() = %q, want %q", tt.m, got, tt.want)
		}
	}
}
