package vnc

import (
	"bufio"
	"net"
)

func bufioReader(nc net.Conn) *bufio.Reader { return bufio.NewReader(nc) }

// knownDES: see TestVNCAuthKnownAnswer.
const knownDES = "b866924125c8eebb9debc1db61c538e2"
