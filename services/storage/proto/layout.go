package proto

import (
	"syscall"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// argument is one encoded field of a request. The encoder and the decoder
// both walk requestLayout, so the two cannot disagree on the order.
type argument uint8

const (
	argCaller     argument = iota + 1 // uid u32, gid u32, pid u32, groups (u32 count, u32 each), principal 32 bytes
	argIno                            // u64
	argHandle                         // u64
	argName                           // u32 length || bytes, at most fsapi.MaxNameLen
	argNewParent                      // u64
	argNewName                        // u32 length || bytes, at most fsapi.MaxNameLen
	argTarget                         // u32 length || bytes, at most fsapi.MaxSymlinkLen
	argMode                           // u32
	argRdev                           // u64
	argFlags                          // u32
	argMask                           // u32
	argSetAttr                        // valid, mode, uid, gid u32; size u64; atime, mtime, ctime i64; handle u64
	argOffset                         // i64
	argSize                           // u32, at most fsapi.MaxWrite
	argData                           // u32 length || bytes, at most fsapi.MaxWrite
	argLength                         // u64
	argWhence                         // u32
	argCookie                         // u64
	argMax                            // u32, at most MaxDirEntries
	argOwner                          // u64
	argLock                           // start u64, end u64, type u32, pid u32
	argWait                           // bool byte
	argHow                            // u32
	argDatasync                       // bool byte
	argOutIno                         // u64
	argOutHandle                      // u64
	argOutOffset                      // i64
	argXattrName                      // u32 length || bytes, at most fsapi.MaxXattrNameLen
	argXattrValue                     // u32 length || bytes, at most fsapi.MaxXattrSize
)

var argumentNames = [...]string{
	argCaller:     "caller",
	argIno:        "ino",
	argHandle:     "handle",
	argName:       "name",
	argNewParent:  "new parent",
	argNewName:    "new name",
	argTarget:     "target",
	argMode:       "mode",
	argRdev:       "rdev",
	argFlags:      "flags",
	argMask:       "mask",
	argSetAttr:    "setattr",
	argOffset:     "offset",
	argSize:       "size",
	argData:       "data",
	argLength:     "length",
	argWhence:     "whence",
	argCookie:     "cookie",
	argMax:        "max",
	argOwner:      "lock owner",
	argLock:       "lock",
	argWait:       "wait",
	argHow:        "how",
	argDatasync:   "datasync",
	argOutIno:     "out ino",
	argOutHandle:  "out handle",
	argOutOffset:  "out offset",
	argXattrName:  "xattr name",
	argXattrValue: "xattr value",
}

func (a argument) String() string { return argumentNames[a] }

// limit returns the largest length or value the argument may have, or -1 if
// it has no limit beyond its width.
func (a argument) limit() int {
	switch a {
	case argName, argNewName:
		return fsapi.MaxNameLen
	case argTarget:
		return fsapi.MaxSymlinkLen
	case argSize, argData:
		return fsapi.MaxWrite
	case argMax:
		return MaxDirEntries
	case argXattrName:
		return fsapi.MaxXattrNameLen
	case argXattrValue:
		return fsapi.MaxXattrSize
	case argCaller:
		return MaxGroups
	}
	return -1
}

// errno returns the POSIX error that the client reports when an argument is
// above its limit, as Linux reports it for the matching system call.
func (a argument) errno() syscall.Errno {
	switch a {
	case argName, argNewName, argTarget:
		return syscall.ENAMETOOLONG
	case argXattrName:
		return syscall.ERANGE
	case argXattrValue:
		return syscall.E2BIG
	}
	return syscall.EINVAL
}

// requestLayout lists the arguments of each operation in encoding order.
// The Caller, when present, always comes first.
var requestLayout = [opEnd][]argument{
	OpLookup:        {argCaller, argIno, argName},
	OpGetAttr:       {argCaller, argIno},
	OpSetAttr:       {argCaller, argIno, argSetAttr},
	OpAccess:        {argCaller, argIno, argMask},
	OpMknod:         {argCaller, argIno, argName, argMode, argRdev},
	OpMkdir:         {argCaller, argIno, argName, argMode},
	OpCreate:        {argCaller, argIno, argName, argMode, argFlags},
	OpSymlink:       {argCaller, argIno, argName, argTarget},
	OpLink:          {argCaller, argIno, argNewParent, argNewName},
	OpUnlink:        {argCaller, argIno, argName},
	OpRmdir:         {argCaller, argIno, argName},
	OpRename:        {argCaller, argIno, argName, argNewParent, argNewName, argFlags},
	OpReadlink:      {argCaller, argIno},
	OpOpen:          {argCaller, argIno, argFlags},
	OpRead:          {argCaller, argIno, argHandle, argOffset, argSize},
	OpWrite:         {argCaller, argIno, argHandle, argOffset, argData},
	OpFlush:         {argCaller, argIno, argHandle, argOwner},
	OpRelease:       {argIno, argHandle},
	OpFsync:         {argCaller, argIno, argHandle, argDatasync},
	OpFallocate:     {argCaller, argIno, argHandle, argMode, argOffset, argLength},
	OpLseek:         {argCaller, argIno, argHandle, argOffset, argWhence},
	OpCopyFileRange: {argCaller, argIno, argHandle, argOffset, argOutIno, argOutHandle, argOutOffset, argLength, argFlags},
	OpOpenDir:       {argCaller, argIno, argFlags},
	OpReadDir:       {argCaller, argIno, argHandle, argCookie, argMax},
	OpReleaseDir:    {argIno, argHandle},
	OpFsyncDir:      {argCaller, argIno, argHandle},
	OpStatFS:        {argCaller, argIno},
	OpSyncFS:        {argCaller},
	OpGetXattr:      {argCaller, argIno, argXattrName},
	OpSetXattr:      {argCaller, argIno, argXattrName, argXattrValue, argFlags},
	OpListXattr:     {argCaller, argIno},
	OpRemoveXattr:   {argCaller, argIno, argXattrName},
	OpGetLk:         {argCaller, argIno, argHandle, argOwner, argLock},
	OpSetLk:         {argCaller, argIno, argHandle, argOwner, argLock, argWait},
	OpFlock:         {argCaller, argIno, argHandle, argHow, argWait},
	OpInterrupt:     {},
	OpOpenAttr:      {argCaller, argIno, argFlags},
	OpCreateAttrs:   {argCaller, argIno, argName, argMode, argFlags},
	OpMkdirAttrs:    {argCaller, argIno, argName, argMode},
	OpUnlinkAttrs:   {argCaller, argIno, argName},
	OpRmdirAttrs:    {argCaller, argIno, argName},
}

// result is one encoded field of a successful response.
type result uint8

const (
	resAttr       result = iota + 1 // ino u64, mode, nlink, uid, gid u32; rdev, size, blocks u64; atime, mtime, ctime i64
	resHandle                       // u64
	resTarget                       // u32 length || bytes, at most fsapi.MaxSymlinkLen
	resData                         // u32 length || bytes, at most fsapi.MaxWrite
	resXattrValue                   // u32 length || bytes, at most fsapi.MaxXattrSize
	resWritten                      // u64, at most fsapi.MaxWrite
	resCopied                       // u64
	resOffset                       // i64
	resEntries                      // u32 count (at most MaxDirEntries), then per entry: name, ino u64, mode u32, cookie u64
	resStatFS                       // blocks, bfree, bavail, files, ffree u64; bsize, namelen, frsize u32
	resNames                        // u32 count, then each name; all names with a NUL each fit in fsapi.MaxXattrSize
	resLock                         // start u64, end u64, type u32, pid u32
	resDirAttr                      // as resAttr, the attributes of the directory that the op changed
)

var resultNames = [...]string{
	resAttr:       "attr",
	resHandle:     "handle",
	resTarget:     "target",
	resData:       "data",
	resXattrValue: "xattr value",
	resWritten:    "written",
	resCopied:     "copied",
	resOffset:     "offset",
	resEntries:    "entries",
	resStatFS:     "statfs",
	resNames:      "names",
	resLock:       "lock",
	resDirAttr:    "dir attr",
}

func (r result) String() string { return resultNames[r] }

// responseLayout lists the results of each operation in encoding order.
// OpInterrupt has no response; it is rejected before the table is used.
var responseLayout = [opEnd][]result{
	OpLookup:        {resAttr},
	OpGetAttr:       {resAttr},
	OpSetAttr:       {resAttr},
	OpMknod:         {resAttr},
	OpMkdir:         {resAttr},
	OpCreate:        {resAttr, resHandle},
	OpSymlink:       {resAttr},
	OpLink:          {resAttr},
	OpReadlink:      {resTarget},
	OpOpen:          {resHandle},
	OpOpenAttr:      {resAttr, resHandle},
	OpRead:          {resData},
	OpWrite:         {resWritten},
	OpLseek:         {resOffset},
	OpCopyFileRange: {resCopied},
	OpOpenDir:       {resHandle},
	OpReadDir:       {resEntries},
	OpStatFS:        {resStatFS},
	OpGetXattr:      {resXattrValue},
	OpListXattr:     {resNames},
	OpGetLk:         {resLock},
	OpCreateAttrs:   {resAttr, resHandle, resDirAttr},
	OpMkdirAttrs:    {resAttr, resDirAttr},
	OpUnlinkAttrs:   {resDirAttr},
	OpRmdirAttrs:    {resDirAttr},
}
