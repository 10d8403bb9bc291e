package swtpm

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"
)

// Control channel protocol of swtpm, from include/swtpm/tpm_ioctl.h and
// src/swtpm/ctrlchannel.c in the swtpm sources. A request is a 4-byte
// big-endian command code followed by the command's input. The response to
// CMD_GET_CAPABILITY is an 8-byte capability mask. The response to every
// other command starts with a 4-byte big-endian result code, 0 on success.
const (
	ctrlGetCapability uint32 = 0x01 // CMD_GET_CAPABILITY: list supported control commands
	ctrlInit          uint32 = 0x02 // CMD_INIT: reset and restart the TPM, with 4 bytes of flags as input
	ctrlShutdown      uint32 = 0x03 // CMD_SHUTDOWN: end the TPM and exit the process

	ctrlTimeout = 5 * time.Second
)

// ctrlRequest sends a control command with input and reads a response of
// responseLen bytes.
func ctrlRequest(path string, command uint32, input []byte, responseLen int) ([]byte, error) {
	conn, err := net.DialTimeout("unix", path, ctrlTimeout)
	if err != nil {
		return nil, fmt.Errorf("connect to control socket %s: %w", path, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(ctrlTimeout)); err != nil {
		return nil, fmt.Errorf("set deadline on control socket %s: %w", path, err)
	}

	request := binary.BigEndian.AppendUint32(nil, command)
	request = append(request, input...)
	if _, err := conn.Write(request); err != nil {
		return nil, fmt.Errorf("send control command %#x to %s: %w", command, path, err)
	}

	response := make([]byte, responseLen)
	if _, err := io.ReadFull(conn, response); err != nil {
		return nil, fmt.Errorf("read response to control command %#x from %s: %w", command, path, err)
	}
	return response, nil
}

// ctrlCommand sends a control command whose response is only the result
// code, and fails unless the result is 0.
func ctrlCommand(path string, command uint32, input []byte) error {
	response, err := ctrlRequest(path, command, input, 4)
	if err != nil {
		return err
	}
	if result := binary.BigEndian.Uint32(response); result != 0 {
		return fmt.Errorf("control command %#x on %s failed with result %#x", command, path, result)
	}
	return nil
}

// ctrlCapabilities returns the mask of control commands swtpm supports. A
// response proves that swtpm's main loop is running.
func ctrlCapabilities(path string) (uint64, error) {
	response, err := ctrlRequest(path, ctrlGetCapability, nil, 8)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(response), nil
}
