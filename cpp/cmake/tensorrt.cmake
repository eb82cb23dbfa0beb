# Finds TensorRT (NvInfer.h + libnvinfer) or TensorRT-RTX (NvInfer.h + libtensorrt_rtx) for the .plan
# backend, as DNX_TENSORRT_PRODUCT asks, and defines the imported target dnx::tensorrt. Sets
# DNX_TENSORRT_INCLUDE_DIR, DNX_TENSORRT_LIBRARY and DNX_TENSORRT_NAME. Where to look, per product:
#   TensorRT:     -DTENSORRT_ROOT=<dir> (or $TENSORRT_ROOT), else the system (Debian/Ubuntu libnvinfer-dev);
#                 -DTENSORRT_INCLUDE_DIR / -DTENSORRT_LIBRARY override either half.
#   TensorRT-RTX: -DTENSORRT_RTX_ROOT=<SDK dir> (or $TENSORRT_RTX_ROOT), else the system;
#                 -DTENSORRT_RTX_INCLUDE_DIR / -DTENSORRT_RTX_LIBRARY override either half.
if(DNX_TENSORRT_PRODUCT STREQUAL "auto")
  set(_dnx_trt_products tensorrt tensorrt-rtx)
elseif(DNX_TENSORRT_PRODUCT STREQUAL "tensorrt" OR DNX_TENSORRT_PRODUCT STREQUAL "tensorrt-rtx")
  set(_dnx_trt_products "${DNX_TENSORRT_PRODUCT}")
else()
  message(FATAL_ERROR "DNX_TENSORRT_PRODUCT must be auto, tensorrt or tensorrt-rtx, not '${DNX_TENSORRT_PRODUCT}'")
endif()

set(_dnx_trt_report "")
foreach(_product IN LISTS _dnx_trt_products)
  if(_product STREQUAL "tensorrt")
    set(_var TENSORRT)
    set(_name "TensorRT")
    set(_lib nvinfer)
  else()
    set(_var TENSORRT_RTX)
    set(_name "TensorRT-RTX")
    set(_lib tensorrt_rtx)
  endif()
  set(_roots "${${_var}_ROOT}" "$ENV{${_var}_ROOT}")
  set(_include_hints "")
  set(_lib_hints "")
  foreach(_root IN LISTS _roots)
    if(_root)
      list(APPEND _include_hints "${_root}/include")
      list(APPEND _lib_hints "${_root}/lib" "${_root}/lib64")
    endif()
  endforeach()
  find_path(${_var}_INCLUDE_DIR NvInfer.h HINTS ${_include_hints} PATH_SUFFIXES x86_64-linux-gnu aarch64-linux-gnu)
  find_library(${_var}_LIBRARY ${_lib} HINTS ${_lib_hints})
  if(${_var}_INCLUDE_DIR AND ${_var}_LIBRARY)
    set(DNX_TENSORRT_INCLUDE_DIR "${${_var}_INCLUDE_DIR}")
    set(DNX_TENSORRT_LIBRARY "${${_var}_LIBRARY}")
    set(DNX_TENSORRT_NAME "${_name}")
    break()
  endif()
  set(_missing "")
  if(NOT ${_var}_INCLUDE_DIR)
    list(APPEND _missing "NvInfer.h")
  endif()
  if(NOT ${_var}_LIBRARY)
    list(APPEND _missing "lib${_lib}.so")
  endif()
  list(JOIN _missing " and " _missing)
  set(_where "${${_var}_ROOT}")
  if(NOT _where)
    set(_where "unset")
  endif()
  string(APPEND _dnx_trt_report
         "\n  ${_name}: ${_missing} not found (${_var}_ROOT=${_where}, then the system paths); pass "
         "-D${_var}_ROOT=<dir with include/ and lib/>, or -D${_var}_INCLUDE_DIR=<dir with NvInfer.h> and "
         "-D${_var}_LIBRARY=<path to lib${_lib}.so*>")
endforeach()

if(NOT DNX_TENSORRT_NAME)
  message(FATAL_ERROR "DNX_WITH_TENSORRT=ON (DNX_TENSORRT_PRODUCT=${DNX_TENSORRT_PRODUCT}) but no TensorRT "
                      "was found:${_dnx_trt_report}\n  Or configure without -DDNX_WITH_TENSORRT=ON to build "
                      "the ONNX Runtime backend only.")
endif()
add_library(dnx::tensorrt SHARED IMPORTED GLOBAL)
set_target_properties(dnx::tensorrt PROPERTIES IMPORTED_LOCATION "${DNX_TENSORRT_LIBRARY}")
message(STATUS "${DNX_TENSORRT_NAME}: ${DNX_TENSORRT_LIBRARY} (headers ${DNX_TENSORRT_INCLUDE_DIR})")
