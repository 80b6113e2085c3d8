# Cross-compile wsx for 64-bit Windows with Debian's mingw-w64; run what it builds under Wine.
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(WSX_MINGW_TRIPLE x86_64-w64-mingw32)

find_program(WSX_MINGW_GCC ${WSX_MINGW_TRIPLE}-gcc)
if(NOT WSX_MINGW_GCC)
  message(FATAL_ERROR "${WSX_MINGW_TRIPLE}-gcc not found: run `make deps` (Debian: gcc-mingw-w64-x86-64)")
endif()
set(CMAKE_C_COMPILER ${WSX_MINGW_GCC})
set(CMAKE_RC_COMPILER ${WSX_MINGW_TRIPLE}-windres)

set(CMAKE_FIND_ROOT_PATH /usr/${WSX_MINGW_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# ctest and add_custom_command run every .exe through this launcher (Wine, own prefix).
set(CMAKE_CROSSCOMPILING_EMULATOR ${CMAKE_CURRENT_LIST_DIR}/wine-run)
